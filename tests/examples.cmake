# Example smoke tests (label "examples"): the echo demo (server, protocol client,
# SIGTERM shutdown), the asyncio-true examples against their Python originals, and the
# stream examples against each echo_server style. The scripts bound every wait
# themselves; CTest's timeout is the backstop.
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
  set_tests_properties(examples.demo PROPERTIES LABELS examples TIMEOUT ${TIDE_TEST_TIMEOUT})
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

# Takes the next ```c block out of the Markdown text in <rest_var>: sets <code_var> to
# its code (unset when there is none left), <before_var> to the text before its fence,
# and leaves the text after it in <rest_var>. string(FIND), not a list split: C code
# is full of the semicolons and brackets that CMake lists treat specially.
macro(tide_next_c_block rest_var code_var before_var)
  unset(${code_var})
  string(FIND "${${rest_var}}" "```c\n" _fence)
  if(NOT _fence EQUAL -1)
    string(SUBSTRING "${${rest_var}}" 0 ${_fence} ${before_var})
    math(EXPR _fence "${_fence} + 5")
    string(SUBSTRING "${${rest_var}}" ${_fence} -1 ${rest_var})
    string(FIND "${${rest_var}}" "\n```" _fence)
    if(_fence EQUAL -1)
      message(FATAL_ERROR "a ```c block in the Markdown is not closed")
    endif()
    string(SUBSTRING "${${rest_var}}" 0 ${_fence} ${code_var})
    string(SUBSTRING "${${rest_var}}" ${_fence} -1 ${rest_var})
  endif()
endmacro()

# The examples that reproduce an asyncio program, each against its Python original
# (tests/examples/asyncio/): same peer, same output line for line, same exit status.
find_package(Python3 QUIET COMPONENTS Interpreter)
if(Python3_EXECUTABLE)
  foreach(_pair
      echo_server_protocol:asyncio_echo_server_protocol
      echo_client_protocol:asyncio_echo_client_protocol
      tcp_echo_server:asyncio_tcp_echo_server
      tcp_echo_client:asyncio_tcp_echo_client
      simple_echo_protocol:simple_echo_protocol
      line_client:line_client
      wait_for_data:wait_for_data)
    string(REPLACE ":" ";" _pair "${_pair}")
    list(GET _pair 0 _original)
    list(GET _pair 1 _program)
    add_test(NAME examples.asyncio_${_original}
      COMMAND "${Python3_EXECUTABLE}" "${CMAKE_CURRENT_SOURCE_DIR}/examples/asyncio_compare.py"
              ${_original} "$<TARGET_FILE:${_program}>"
              "${CMAKE_CURRENT_SOURCE_DIR}/examples/asyncio/${_original}.py")
    set_tests_properties(examples.asyncio_${_original} PROPERTIES
      LABELS examples TIMEOUT ${TIDE_TEST_TIMEOUT})
  endforeach()
endif()

set(_tide_readme "${PROJECT_SOURCE_DIR}/README.md")
if(EXISTS "${_tide_readme}")
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${_tide_readme}")
  file(READ "${_tide_readme}" _rest)
  set(_index 0)
  while(TRUE)
    tide_next_c_block(_rest _code _before)
    if(NOT DEFINED _code)
      break()
    endif()
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

# The guide (docs/guide/*.md): every ```c block is compiled, so that no snippet rots.
# A block with a main() is a program (linked against tide); any other block is a
# translation unit of its own (compiled only). A program whose fence is preceded by
# the line <!-- run --> (invisible in the rendered page) finishes on its own and is
# run as docs.guide_<page>_<n>.
file(GLOB _tide_guide_pages CONFIGURE_DEPENDS "${PROJECT_SOURCE_DIR}/docs/guide/*.md")
foreach(_page IN LISTS _tide_guide_pages)
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${_page}")
  get_filename_component(_page_name "${_page}" NAME_WE)
  file(READ "${_page}" _rest)
  set(_index 0)
  while(TRUE)
    tide_next_c_block(_rest _code _before)
    if(NOT DEFINED _code)
      break()
    endif()
    string(REGEX MATCH "<!-- run -->\n$" _run "${_before}")
    math(EXPR _index "${_index} + 1")
    set(_target guide_${_page_name}_${_index})
    set(_src "${CMAKE_CURRENT_BINARY_DIR}/guide/${_target}.c")
    file(WRITE "${_src}.tmp" "${_code}\n")
    configure_file("${_src}.tmp" "${_src}" COPYONLY)
    string(FIND "${_code}" "int main(" _main_at)
    if(_main_at EQUAL -1)
      add_library(${_target} OBJECT "${_src}")
    else()
      add_executable(${_target} "${_src}")
    endif()
    target_compile_options(${_target} PRIVATE ${TIDE_WARNINGS})
    if(_main_at EQUAL -1)
      # A fragment's helpers are used by code the page leaves to the reader (after
      # -Wall, which clang lets re-enable it).
      target_compile_options(${_target} PRIVATE -Wno-unused-function)
    endif()
    target_compile_definitions(${_target} PRIVATE _GNU_SOURCE)
    target_link_libraries(${_target} PRIVATE tide::tide)
    if(_run AND NOT _main_at EQUAL -1)
      add_test(NAME docs.guide_${_page_name}_${_index} COMMAND ${_target})
      set_tests_properties(docs.guide_${_page_name}_${_index} PROPERTIES
        LABELS "docs;examples" TIMEOUT ${TIDE_TEST_TIMEOUT})
    endif()
  endwhile()
endforeach()
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
