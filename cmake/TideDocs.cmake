# The reference and the guide: `cmake --build build --target docs` runs Doxygen over the
# public headers (through docs/tools/doxygen_filter.py, which reads their plain comments
# as documentation) and the Markdown guide in docs/guide/, writes build/docs/html, and
# fails when any exported function, type or macro has no documentation comment
# (docs/tools/check_reference.py names each one). The HTML is installed under
# share/doc/tide/html when it was built. With Doxygen or Python missing, the target
# says what to install.
#
# Tests (label "docs", only when Doxygen is found): docs.reference builds the reference
# into its own directory and checks it; docs.check_self_test proves the check fails on
# undocumented declarations.
find_package(Doxygen QUIET)
find_package(Python3 QUIET COMPONENTS Interpreter)

set(TIDE_DOCS_OUTPUT "${PROJECT_BINARY_DIR}/docs")
set(_tide_docs_tools "${PROJECT_SOURCE_DIR}/docs/tools")

if(NOT DOXYGEN_EXECUTABLE OR NOT Python3_EXECUTABLE)
  add_custom_target(docs
    COMMAND ${CMAKE_COMMAND} -E echo
            "docs: needs doxygen and python3 (Debian: apt-get install doxygen python3), then re-run cmake"
    COMMAND ${CMAKE_COMMAND} -E false)
  return()
endif()

set(TIDE_PYTHON "${Python3_EXECUTABLE}")
configure_file("${PROJECT_SOURCE_DIR}/docs/Doxyfile.in" "${TIDE_DOCS_OUTPUT}/Doxyfile" @ONLY)

file(GLOB _tide_docs_inputs CONFIGURE_DEPENDS
  "${PROJECT_SOURCE_DIR}/include/*.h" "${PROJECT_SOURCE_DIR}/include/tide/*.h"
  "${PROJECT_SOURCE_DIR}/docs/guide/*.md" "${_tide_docs_tools}/*.py")
add_custom_command(OUTPUT "${TIDE_DOCS_OUTPUT}/html/index.html"
  COMMAND "${Python3_EXECUTABLE}" "${_tide_docs_tools}/build_reference.py"
          "${DOXYGEN_EXECUTABLE}" "${TIDE_DOCS_OUTPUT}/Doxyfile" "${PROJECT_SOURCE_DIR}"
          "${TIDE_DOCS_OUTPUT}"
  DEPENDS ${_tide_docs_inputs} "${TIDE_DOCS_OUTPUT}/Doxyfile"
  COMMENT "Doxygen: the reference and guide in ${TIDE_DOCS_OUTPUT}/html"
  VERBATIM)
add_custom_target(docs DEPENDS "${TIDE_DOCS_OUTPUT}/html/index.html")

install(DIRECTORY "${TIDE_DOCS_OUTPUT}/html/" DESTINATION "${CMAKE_INSTALL_DOCDIR}/html"
  COMPONENT docs OPTIONAL)

if(TIDE_BUILD_TESTS)
  add_test(NAME docs.reference
    COMMAND "${Python3_EXECUTABLE}" "${_tide_docs_tools}/build_reference.py"
            "${DOXYGEN_EXECUTABLE}" "${TIDE_DOCS_OUTPUT}/Doxyfile" "${PROJECT_SOURCE_DIR}"
            "${PROJECT_BINARY_DIR}/docs-check")
  add_test(NAME docs.check_self_test
    COMMAND "${Python3_EXECUTABLE}" "${_tide_docs_tools}/build_reference.py" --self-test
            "${DOXYGEN_EXECUTABLE}" "${TIDE_DOCS_OUTPUT}/Doxyfile"
            "${PROJECT_BINARY_DIR}/docs-self-test")
  set_tests_properties(docs.reference docs.check_self_test PROPERTIES
    LABELS docs TIMEOUT ${TIDE_TEST_TIMEOUT})
endif()
