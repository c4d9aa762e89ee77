# The UDP echo examples against Python asyncio's create_datagram_endpoint (label
# "interop"), both ways, over IPv4, IPv6 and Unix datagram sockets; the script bounds
# its own waits (tests/interop/interop.py).
if(NOT TIDE_BUILD_EXAMPLES OR NOT TIDE_PYTHON3)
  return()
endif()
add_test(NAME interop.udp_echo
  COMMAND ${TIDE_PYTHON3} "${CMAKE_CURRENT_SOURCE_DIR}/datagram/test_udp_echo.py"
          "$<TARGET_FILE:udp_echo_server>" "$<TARGET_FILE:udp_echo_client>")
set_tests_properties(interop.udp_echo PROPERTIES LABELS interop TIMEOUT ${TIDE_TEST_TIMEOUT})
