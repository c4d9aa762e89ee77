# Finds mbedTLS (2.28 or 3.x; Debian ships neither pkg-config nor CMake files for 2.28)
# and defines the imported targets MbedTLS::mbedtls, MbedTLS::mbedx509 and
# MbedTLS::mbedcrypto, each linking the next, and MbedTLS_VERSION.
#
# A prefix named by MbedTLS_ROOT or CMAKE_PREFIX_PATH wins over the system's (find_path
# and find_library search those first). The libraries are then looked for next to the
# headers that were found before anywhere else, so that headers of one installation
# are never paired with the libraries of another (Debian's 2.28 in /usr stays visible
# while a 3.x prefix is used).
find_path(MBEDTLS_INCLUDE_DIR NAMES mbedtls/ssl.h)

set(_mbedtls_lib_hints)
if(MBEDTLS_INCLUDE_DIR)
  get_filename_component(_mbedtls_prefix "${MBEDTLS_INCLUDE_DIR}" DIRECTORY)
  set(_mbedtls_lib_hints "${_mbedtls_prefix}/lib" "${_mbedtls_prefix}/lib64")
  if(CMAKE_LIBRARY_ARCHITECTURE)
    list(APPEND _mbedtls_lib_hints "${_mbedtls_prefix}/lib/${CMAKE_LIBRARY_ARCHITECTURE}")
  endif()
  unset(_mbedtls_prefix)
endif()
foreach(_mbedtls_lib mbedtls mbedx509 mbedcrypto)
  string(TOUPPER "${_mbedtls_lib}" _mbedtls_var)
  # First only next to the headers; the general search is the fallback (a layout with
  # headers and libraries in unrelated directories).
  find_library(${_mbedtls_var}_LIBRARY NAMES ${_mbedtls_lib} HINTS ${_mbedtls_lib_hints}
               NO_DEFAULT_PATH)
  find_library(${_mbedtls_var}_LIBRARY NAMES ${_mbedtls_lib})
endforeach()
unset(_mbedtls_lib)
unset(_mbedtls_var)
unset(_mbedtls_lib_hints)

if(MBEDTLS_INCLUDE_DIR)
  # 3.x keeps the version in build_info.h (its version.h only declares functions), 2.x
  # in version.h: look at build_info.h first, so a 3.x tree is never misread.
  unset(MbedTLS_VERSION)
  foreach(_mbedtls_header build_info.h version.h)
    set(_mbedtls_file "${MBEDTLS_INCLUDE_DIR}/mbedtls/${_mbedtls_header}")
    if(EXISTS "${_mbedtls_file}" AND NOT MbedTLS_VERSION)
      file(STRINGS "${_mbedtls_file}" _mbedtls_line
           REGEX "^#define[ \t]+MBEDTLS_VERSION_STRING[ \t]+\"[0-9.]+\"")
      if(_mbedtls_line MATCHES "\"([0-9.]+)\"")
        set(MbedTLS_VERSION "${CMAKE_MATCH_1}")
      endif()
    endif()
  endforeach()
  unset(_mbedtls_file)
  unset(_mbedtls_line)
  unset(_mbedtls_header)
endif()

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(MbedTLS
  REQUIRED_VARS MBEDTLS_LIBRARY MBEDX509_LIBRARY MBEDCRYPTO_LIBRARY MBEDTLS_INCLUDE_DIR
  VERSION_VAR MbedTLS_VERSION)

if(MbedTLS_FOUND)
  if(NOT TARGET MbedTLS::mbedcrypto)
    add_library(MbedTLS::mbedcrypto UNKNOWN IMPORTED)
    set_target_properties(MbedTLS::mbedcrypto PROPERTIES
      IMPORTED_LOCATION "${MBEDCRYPTO_LIBRARY}"
      INTERFACE_INCLUDE_DIRECTORIES "${MBEDTLS_INCLUDE_DIR}")
  endif()
  if(NOT TARGET MbedTLS::mbedx509)
    add_library(MbedTLS::mbedx509 UNKNOWN IMPORTED)
    set_target_properties(MbedTLS::mbedx509 PROPERTIES
      IMPORTED_LOCATION "${MBEDX509_LIBRARY}"
      INTERFACE_INCLUDE_DIRECTORIES "${MBEDTLS_INCLUDE_DIR}"
      INTERFACE_LINK_LIBRARIES MbedTLS::mbedcrypto)
  endif()
  if(NOT TARGET MbedTLS::mbedtls)
    add_library(MbedTLS::mbedtls UNKNOWN IMPORTED)
    set_target_properties(MbedTLS::mbedtls PROPERTIES
      IMPORTED_LOCATION "${MBEDTLS_LIBRARY}"
      INTERFACE_INCLUDE_DIRECTORIES "${MBEDTLS_INCLUDE_DIR}"
      INTERFACE_LINK_LIBRARIES MbedTLS::mbedx509)
  endif()
endif()
mark_as_advanced(MBEDTLS_INCLUDE_DIR MBEDTLS_LIBRARY MBEDX509_LIBRARY MBEDCRYPTO_LIBRARY)
