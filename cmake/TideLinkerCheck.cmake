# Run by `cmake --install` after the libraries are in place (install(SCRIPT), see
# TideInstall.cmake): can the dynamic linker find the installed libtide.so.N without
# help? If not, say so and how to fix it, because a program built with the README's
# `cc app.c $(pkg-config --cflags --libs tide)` would otherwise fail at start with
# "cannot open shared object file".
#   - a prefix the linker searches through its cache (/etc/ld.so.conf, such as
#     /usr/local/lib on Debian): installing as root runs ldconfig, as packages do;
#     otherwise the message says to run it;
#   - a prefix it never searches (any custom prefix): the message gives the choices
#     (an ld.so.conf.d entry, -Wl,-rpath, LD_LIBRARY_PATH).
# Staged installs (DESTDIR, as dpkg-buildpackage does) are not checked: the package
# manager runs ldconfig on the real system.
# Reads TIDE_INSTALL_LIBDIR_FOR_CHECK and TIDE_SONAME_FOR_CHECK (set by install(CODE)).
if(NOT "$ENV{DESTDIR}" STREQUAL "" OR NOT CMAKE_HOST_SYSTEM_NAME STREQUAL "Linux")
  return()
endif()

set(_libdir "${TIDE_INSTALL_LIBDIR_FOR_CHECK}")
if(NOT IS_ABSOLUTE "${_libdir}")
  set(_libdir "${CMAKE_INSTALL_PREFIX}/${_libdir}")
endif()
get_filename_component(_libdir "${_libdir}" REALPATH)
set(_soname "${TIDE_SONAME_FOR_CHECK}")

# The directories the linker knows through ld.so.conf (following its includes).
function(tide_ld_conf_dirs file out)
  set(_dirs "")
  if(EXISTS "${file}")
    file(STRINGS "${file}" _lines)
    foreach(_line IN LISTS _lines)
      string(REGEX REPLACE "#.*" "" _line "${_line}")
      string(STRIP "${_line}" _line)
      if(_line MATCHES "^include[ \t]+(.+)$")
        file(GLOB _included "${CMAKE_MATCH_1}")
        foreach(_inc IN LISTS _included)
          tide_ld_conf_dirs("${_inc}" _sub)
          list(APPEND _dirs ${_sub})
        endforeach()
      elseif(_line MATCHES "^/")
        get_filename_component(_line "${_line}" REALPATH)
        list(APPEND _dirs "${_line}")
      endif()
    endforeach()
  endif()
  set(${out} "${_dirs}" PARENT_SCOPE)
endfunction()

set(_trusted "")
foreach(_d /lib /usr/lib /lib64 /usr/lib64)
  if(IS_DIRECTORY "${_d}")
    get_filename_component(_d "${_d}" REALPATH)
    list(APPEND _trusted "${_d}")
  endif()
endforeach()
tide_ld_conf_dirs("/etc/ld.so.conf" _configured)

find_program(_tide_ldconfig ldconfig PATHS /sbin /usr/sbin)
# Is the library in the linker's cache already, in this directory?
set(_cached FALSE)
if(_tide_ldconfig)
  execute_process(COMMAND "${_tide_ldconfig}" -p OUTPUT_VARIABLE _cache ERROR_QUIET)
  string(FIND "${_cache}" "=> ${_libdir}/${_soname}\n" _at)
  if(NOT _at EQUAL -1)
    set(_cached TRUE)
  endif()
endif()

list(FIND _trusted "${_libdir}" _in_trusted)
list(FIND _configured "${_libdir}" _in_configured)
if(_cached OR NOT _in_trusted EQUAL -1)
  return()
endif()

set(_fixes "  - link with -Wl,-rpath,${_libdir} (CMake users of tide::tide get it with
    CMAKE_INSTALL_RPATH or CMAKE_BUILD_RPATH), or
  - set LD_LIBRARY_PATH=${_libdir} when running the program, or
  - link the static library instead: pkg-config --libs tide-static, or tide::tide_static.")
if(NOT _in_configured EQUAL -1)
  execute_process(COMMAND id -u OUTPUT_VARIABLE _uid OUTPUT_STRIP_TRAILING_WHITESPACE
                  ERROR_QUIET)
  if(_uid STREQUAL "0" AND _tide_ldconfig)
    execute_process(COMMAND "${_tide_ldconfig}" RESULT_VARIABLE _rc)
    if(_rc EQUAL 0)
      message(STATUS "Ran ldconfig: ${_soname} in ${_libdir} is now found by the dynamic linker")
      return()
    endif()
  endif()
  message(NOTICE "
tide: ${_libdir} is searched by the dynamic linker, but its cache does not know
${_soname} yet: programs linked against libtide.so will not start until you run
  sudo ldconfig
(or, without root:)
${_fixes}
")
else()
  message(NOTICE "
tide: ${_libdir} is not searched by the dynamic linker: a program linked against
libtide.so will not start (\"${_soname}: cannot open shared object file\") unless
  - the directory is added to its configuration, as root:
      echo ${_libdir} > /etc/ld.so.conf.d/tide.conf && ldconfig
    or
${_fixes}
")
endif()
