# Interop tests of the streams with Python's asyncio streams (label "interop"):
# asyncio.open_connection clients against examples/echo_server in the streams and
# callbacks styles, and examples/echo_client (task style) against asyncio.start_server.
# Same interpreter choice as interop.cmake; the scripts bound every wait themselves.
if(NOT TIDE_BUILD_EXAMPLES)
  return()
endif()
find_program(TIDE_PYTHON3 NAMES python3 PATHS /usr/bin NO_DEFAULT_PATH)
find_program(TIDE_PYTHON3 NAMES python3)
if(NOT TIDE_PYTHON3)
  message(STATUS "python3 not found: the asyncio streams interop tests are not registered")
  return()
endif()

set(_interop_streams "${CMAKE_CURRENT_SOURCE_DIR}/interop")
foreach(_style streams callbacks)
  add_test(NAME interop.streams_client_${_style}
    COMMAND ${TIDE_PYTHON3} "${_interop_streams}/streams_client.py"
            "$<TARGET_FILE:echo_server>" ${_style})
  set_tests_properties(interop.streams_client_${_style} PROPERTIES
    LABELS interop TIMEOUT ${TIDE_TEST_TIMEOUT})
endforeach()
add_test(NAME interop.streams_server
  COMMAND ${TIDE_PYTHON3} "${_interop_streams}/streams_server.py" "$<TARGET_FILE:echo_client>")
set_tests_properties(interop.streams_server PROPERTIES LABELS interop TIMEOUT ${TIDE_TEST_TIMEOUT})
