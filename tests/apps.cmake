# Application tests (label "apps"): examples/smtp_client against aiosmtpd and
# examples/ftp_client against pyftpdlib, plain and over TLS, plus scripted servers for
# the failure modes (tests/apps). The servers come from Debian's python3-aiosmtpd,
# python3-pyftpdlib and python3-openssl, which import only under /usr/bin/python3; a
# script whose package is missing exits 77 and CTest shows it as skipped. The scripts
# bound every wait themselves (deadlines scale with TIDE_TEST_TIMEOUT_MULTIPLIER, as
# in tests/interop); CTest's timeout is the backstop.
if(NOT TIDE_BUILD_EXAMPLES OR NOT TIDE_PYTHON3 OR NOT TIDE_WITH_TLS)
  return()
endif()

foreach(_app smtp ftp)
  if(NOT TARGET ${_app}_client)
    continue()
  endif()
  add_test(NAME apps.${_app}
    COMMAND ${TIDE_PYTHON3} "${CMAKE_CURRENT_SOURCE_DIR}/apps/test_${_app}.py"
            "$<TARGET_FILE:${_app}_client>")
  # Each script runs a dozen sessions, some moving tens of MiB through the sanitizers.
  math(EXPR _timeout "${TIDE_TEST_TIMEOUT} * 3")
  set_tests_properties(apps.${_app} PROPERTIES
    LABELS apps TIMEOUT ${_timeout} SKIP_RETURN_CODE 77)
endforeach()
