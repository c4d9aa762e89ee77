# Install tests (label "install"): install the build into a temporary prefix, then
# build and run a small consumer (tests/install/) through find_package(tide) and
# through pkg-config. The install runs once, as a CTest fixture for the other two.
find_program(TIDE_BASH bash)
if(NOT TIDE_BASH)
  message(STATUS "bash not found: install tests are not registered")
  return()
endif()

set(_tide_consumer_flags "")
if(TIDE_SANITIZE)
  # A sanitized libtide needs the sanitizer runtime in the program that loads it.
  set(_tide_consumer_flags "-fsanitize=address,undefined -fno-omit-frame-pointer")
endif()

function(tide_add_install_test name step)
  add_test(NAME install.${name}
    COMMAND ${TIDE_BASH} "${CMAKE_CURRENT_SOURCE_DIR}/install/run.sh" ${step}
            "${PROJECT_BINARY_DIR}" "${PROJECT_BINARY_DIR}/install-test" "${PROJECT_VERSION}"
            "${CMAKE_C_COMPILER}" "${_tide_consumer_flags}")
  set_tests_properties(install.${name} PROPERTIES
    LABELS install TIMEOUT ${TIDE_TEST_TIMEOUT} SKIP_RETURN_CODE 77 ${ARGN})
endfunction()

tide_add_install_test(prefix install FIXTURES_SETUP tide_installed)
tide_add_install_test(find_package cmake FIXTURES_REQUIRED tide_installed)
tide_add_install_test(pkg_config pkgconfig FIXTURES_REQUIRED tide_installed)
