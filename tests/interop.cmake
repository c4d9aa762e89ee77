# Interop tests with Python's asyncio (label "interop"), both ways and in every style:
# asyncio clients (protocols and streams) against examples/echo_server, and tide's
# clients (examples/echo_client_protocol, the task-style examples/echo_client) against
# asyncio servers, with TIDE_PYTHON3 (tests/CMakeLists.txt). The scripts bound every
# wait themselves (tests/interop/interop.py).
if(NOT TIDE_BUILD_EXAMPLES OR NOT TIDE_PYTHON3)
  return()
endif()

set(_interop "${CMAKE_CURRENT_SOURCE_DIR}/interop")
function(tide_add_interop name script program)
  add_test(NAME interop.${name}
    COMMAND ${TIDE_PYTHON3} "${_interop}/${script}" "$<TARGET_FILE:${program}>" ${ARGN})
  set_tests_properties(interop.${name} PROPERTIES LABELS interop TIMEOUT ${TIDE_TEST_TIMEOUT})
endfunction()

tide_add_interop(asyncio_client_tcp asyncio_client.py echo_server)
tide_add_interop(asyncio_client_unix asyncio_client.py echo_server --unix)
tide_add_interop(asyncio_server asyncio_server.py echo_client_protocol)
foreach(_style streams callbacks)
  tide_add_interop(streams_client_${_style} streams_client.py echo_server ${_style})
endforeach()
tide_add_interop(streams_server streams_server.py echo_client)
# Clients that leave echo_server in hostile ways, in every style, plain and TLS.
tide_add_interop(departures departures.py echo_server)

# TLS examples (http_headers, echo_client --tls) against Python's ssl module.
if(TIDE_WITH_TLS)
  add_test(NAME interop.tls_examples
    COMMAND ${TIDE_PYTHON3} "${_interop}/tls_examples.py" "$<TARGET_FILE_DIR:http_headers>")
  set_tests_properties(interop.tls_examples PROPERTIES LABELS interop TIMEOUT ${TIDE_TEST_TIMEOUT})
endif()
