# The stream suites a second time over TLS (label "tls"): st_pair_open upgrades both
# streams of every pair with start_tls (tests/support/streams.c), so every reader and
# writer case, at every split point, also runs over the TLS transport.
if(NOT TIDE_WITH_TLS)
  return()
endif()
foreach(_suite split reader writer await)
  add_test(NAME streams.${_suite}_tls COMMAND test_streams_${_suite})
  set_tests_properties(streams.${_suite}_tls PROPERTIES
    LABELS "streams;tls" TIMEOUT ${TIDE_TEST_TIMEOUT}
    ENVIRONMENT "TIDE_TEST_STREAMS_OVER=tls;TIDE_SOURCE_DIR=${PROJECT_SOURCE_DIR};TIDE_BINARY_DIR=${PROJECT_BINARY_DIR}")
endforeach()
