# Interop tests with Python's asyncio (label "interop"): asyncio clients against
# examples/echo_server (TCP and Unix), and examples/echo_client_protocol against an
# asyncio echo server. Debian's /usr/bin/python3 is preferred over whatever python3
# comes first on PATH. The scripts bound every wait themselves.
if(NOT TIDE_BUILD_EXAMPLES)
  return()
endif()
find_program(TIDE_PYTHON3 NAMES python3 PATHS /usr/bin NO_DEFAULT_PATH)
find_program(TIDE_PYTHON3 NAMES python3)
if(NOT TIDE_PYTHON3)
  message(STATUS "python3 not found: the asyncio interop tests are not registered")
  return()
endif()

set(_interop "${CMAKE_CURRENT_SOURCE_DIR}/interop")
add_test(NAME interop.asyncio_client_tcp
  COMMAND ${TIDE_PYTHON3} "${_interop}/asyncio_client.py" "$<TARGET_FILE:echo_server>")
add_test(NAME interop.asyncio_client_unix
  COMMAND ${TIDE_PYTHON3} "${_interop}/asyncio_client.py" "$<TARGET_FILE:echo_server>" --unix)
add_test(NAME interop.asyncio_server
  COMMAND ${TIDE_PYTHON3} "${_interop}/asyncio_server.py" "$<TARGET_FILE:echo_client_protocol>")
set_tests_properties(interop.asyncio_client_tcp interop.asyncio_client_unix
  interop.asyncio_server PROPERTIES LABELS interop TIMEOUT ${TIDE_TEST_TIMEOUT})
