# The coordination examples against Python peers (label "apps"): chat_server with
# many asyncio clients (one that never reads), fetch_many against asyncio HTTP
# servers that delay, fail or refuse. Each script bounds its own waits (deadlines
# scale with TIDE_TEST_TIMEOUT_MULTIPLIER); CTest's timeout is the backstop.
if(NOT TIDE_BUILD_EXAMPLES OR NOT TIDE_PYTHON3)
  return()
endif()
foreach(_example chat_server fetch_many)
  if(NOT TARGET ${_example} OR NOT EXISTS "${CMAKE_CURRENT_SOURCE_DIR}/coordination/test_${_example}.py")
    continue()
  endif()
  add_test(NAME apps.${_example}
    COMMAND ${TIDE_PYTHON3} "${CMAKE_CURRENT_SOURCE_DIR}/coordination/test_${_example}.py"
            "$<TARGET_FILE:${_example}>")
  set_tests_properties(apps.${_example} PROPERTIES LABELS apps TIMEOUT ${TIDE_TEST_TIMEOUT}
    ENVIRONMENT "TIDE_WITH_TLS=${TIDE_WITH_TLS}")
endforeach()
