# Example smoke tests (label "examples"): the echo demo (server, protocol client,
# SIGTERM shutdown), simple_echo_protocol with one client, and the stream examples
# against each echo_server style. The scripts bound every
# wait themselves; CTest's timeout is the backstop.
#
# Also builds the C code of README.md, so that the front page stays in step with the
# API: each ```c block with a main() is built as a program; a block defining cmocka
# tests (static void test_NAME(void **state)) is compiled after the first program's
# code (the protocol example, up to its main), given a main, and run as
# examples.readme_<n>.
if(NOT TIDE_BUILD_EXAMPLES)
  return()
endif()
find_program(TIDE_BASH bash)
if(TIDE_BASH)
  add_test(NAME examples.demo
    COMMAND ${TIDE_BASH} "${PROJECT_SOURCE_DIR}/examples/demo.sh" "$<TARGET_FILE_DIR:echo_server>")
  add_test(NAME examples.simple_echo_protocol
    COMMAND ${TIDE_BASH} "${CMAKE_CURRENT_SOURCE_DIR}/examples/simple_echo.sh"
            "$<TARGET_FILE:simple_echo_protocol>")
  set_tests_properties(examples.demo examples.simple_echo_protocol PROPERTIES
    LABELS examples TIMEOUT ${TIDE_TEST_TIMEOUT})
  # The stream examples (echo_client, line_client, wait_for_data) against echo_server
  # in each of its styles.
  foreach(_style protocol streams callbacks)
    add_test(NAME examples.streams_${_style}
      COMMAND ${TIDE_BASH} "${CMAKE_CURRENT_SOURCE_DIR}/examples/streams.sh"
              "$<TARGET_FILE_DIR:echo_server>" ${_style})
    set_tests_properties(examples.streams_${_style} PROPERTIES
      LABELS examples TIMEOUT ${TIDE_TEST_TIMEOUT})
  endforeach()
endif()

set(_tide_readme "${PROJECT_SOURCE_DIR}/README.md")
if(EXISTS "${_tide_readme}")
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${_tide_readme}")
  file(READ "${_tide_readme}" _rest)
  set(_index 0)
  while(TRUE)
    # The next ```c fence and its closing fence (string(FIND), not a list split: C
    # code is full of the semicolons and brackets that CMake lists treat specially).
    string(FIND "${_rest}" "```c\n" _start)
    if(_start EQUAL -1)
      break()
    endif()
    math(EXPR _start "${_start} + 5")
    string(SUBSTRING "${_rest}" ${_start} -1 _rest)
    string(FIND "${_rest}" "\n```" _end)
    if(_end EQUAL -1)
      break()
    endif()
    string(SUBSTRING "${_rest}" 0 ${_end} _code)
    string(SUBSTRING "${_rest}" ${_end} -1 _rest)
    string(FIND "${_code}" "int main(" _main_at)
    string(REGEX MATCHALL "static void test_[A-Za-z0-9_]+\\(void \\*\\*state\\)" _tests "${_code}")
    if(_main_at EQUAL -1 AND NOT _tests)
      continue()
    endif()
    math(EXPR _index "${_index} + 1")
    set(_target readme_example_${_index})
    set(_src "${CMAKE_CURRENT_BINARY_DIR}/readme/${_target}.c")
    if(_main_at EQUAL -1)
      if(NOT DEFINED _program_head)
        message(FATAL_ERROR "README.md: a test block comes before any program block")
      endif()
      set(_cases "")
      foreach(_t IN LISTS _tests)
        string(REGEX REPLACE "static void (test_[A-Za-z0-9_]+).*" "\\1" _t "${_t}")
        string(APPEND _cases "        cmocka_unit_test(${_t}),\n")
      endforeach()
      set(_code "#include <setjmp.h>\n#include <stdarg.h>\n#include <stddef.h>\n#include <string.h>\n#include <cmocka.h>\n${_program_head}${_code}\n\nint main(void) {\n    const struct CMUnitTest tests[] = {\n${_cases}    };\n    return cmocka_run_group_tests(tests, NULL, NULL);\n}")
    elseif(NOT DEFINED _program_head)
      string(SUBSTRING "${_code}" 0 ${_main_at} _program_head)
    endif()
    file(WRITE "${_src}.tmp" "${_code}\n")
    configure_file("${_src}.tmp" "${_src}" COPYONLY)
    add_executable(${_target} "${_src}")
    target_compile_options(${_target} PRIVATE ${TIDE_WARNINGS})
    target_compile_definitions(${_target} PRIVATE _GNU_SOURCE)
    if(_main_at EQUAL -1)
      # The program's main is cut off, which leaves its other functions unused.
      target_compile_options(${_target} PRIVATE -Wno-unused-function)
      target_include_directories(${_target} PRIVATE ${CMOCKA_INCLUDE_DIR})
      target_link_libraries(${_target} PRIVATE tide::tide ${CMOCKA_LIBRARY})
      add_test(NAME examples.readme_${_index} COMMAND ${_target})
      set_tests_properties(examples.readme_${_index} PROPERTIES
        LABELS examples TIMEOUT ${TIDE_TEST_TIMEOUT})
    else()
      target_link_libraries(${_target} PRIVATE tide::tide)
    endif()
  endwhile()
endif()

# examples/subprocess_shell against asyncio's original on the same commands, byte for
# byte, with a large-output case whose peak memory is checked.
find_package(Python3 COMPONENTS Interpreter QUIET)
if(Python3_Interpreter_FOUND)
  add_test(NAME examples.subprocess_shell
    COMMAND ${Python3_EXECUTABLE} "${CMAKE_CURRENT_SOURCE_DIR}/examples/subprocess_shell_compare.py"
            "$<TARGET_FILE:subprocess_shell>")
  set_tests_properties(examples.subprocess_shell PROPERTIES
    LABELS examples TIMEOUT ${TIDE_TEST_TIMEOUT})
endif()
