# Installation: the two libraries, include/ whole, the CMake package (tideTargets
# exported as tide::tide and tide::tide_static, tideConfig.cmake, a same-major version
# file, the Find modules the static library's dependencies need) and tide.pc.
# Included from the top-level CMakeLists.txt after the library targets exist, so that
# the dependency lists below are read from the targets themselves.
include(CMakePackageConfigHelpers)

set(TIDE_INSTALL_CMAKEDIR "${CMAKE_INSTALL_LIBDIR}/cmake/tide"
    CACHE STRING "Where tideConfig.cmake is installed, relative to the prefix")
set(TIDE_INSTALL_PKGCONFIGDIR "${CMAKE_INSTALL_LIBDIR}/pkgconfig"
    CACHE STRING "Where tide.pc is installed, relative to the prefix")
mark_as_advanced(TIDE_INSTALL_CMAKEDIR TIDE_INSTALL_PKGCONFIGDIR)

install(TARGETS tide tide_static
  EXPORT tideTargets
  RUNTIME DESTINATION "${CMAKE_INSTALL_BINDIR}"
  LIBRARY DESTINATION "${CMAKE_INSTALL_LIBDIR}"
  ARCHIVE DESTINATION "${CMAKE_INSTALL_LIBDIR}"
  INCLUDES DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")

install(DIRECTORY "${PROJECT_SOURCE_DIR}/include/" DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")

install(EXPORT tideTargets
  NAMESPACE tide::
  FILE tideTargets.cmake
  DESTINATION "${TIDE_INSTALL_CMAKEDIR}")

# The libraries link their dependencies privately, so only tide_static's users need
# them (as $<LINK_ONLY:...> in the export). Collect them once, for both the CMake
# package (find_dependency) and tide.pc (Libs.private).
#
# tide_pc_libs(<item> <out-var>) turns one link item into -l flags: an imported target
# by its library file (or, for an interface target, by what it links), a file path by
# its name, a bare name as -l<name>. Threads::Threads is -lpthread.
function(tide_pc_libs item out)
  set(_flags "")
  if(item MATCHES "^\\$<")
    # Generator expressions carry no dependency of their own here.
  elseif(item STREQUAL "Threads::Threads")
    set(_flags "-lpthread")
  elseif(TARGET "${item}")
    get_target_property(_loc "${item}" IMPORTED_LOCATION)
    if(NOT _loc)
      get_target_property(_loc "${item}" IMPORTED_LOCATION_RELEASE)
    endif()
    if(_loc)
      tide_pc_libs("${_loc}" _flags)
    endif()
    get_target_property(_deps "${item}" INTERFACE_LINK_LIBRARIES)
    if(_deps)
      foreach(_dep IN LISTS _deps)
        tide_pc_libs("${_dep}" _sub)
        list(APPEND _flags ${_sub})
      endforeach()
    endif()
  elseif(item MATCHES "^-")
    set(_flags "${item}")
  elseif(IS_ABSOLUTE "${item}")
    get_filename_component(_file "${item}" NAME)
    if(_file MATCHES "^lib(.+)\\.(so|a)(\\..*)?$")
      set(_flags "-l${CMAKE_MATCH_1}")
    else()
      set(_flags "${item}")
    endif()
  else()
    set(_flags "-l${item}")
  endif()
  set(${out} "${_flags}" PARENT_SCOPE)
endfunction()

get_target_property(_tide_link_items tide LINK_LIBRARIES)
if(NOT _tide_link_items)
  set(_tide_link_items "")
endif()

set(TIDE_PC_LIBS_PRIVATE "")
set(TIDE_CONFIG_DEPENDENCIES "")
foreach(_item IN LISTS _tide_link_items)
  tide_pc_libs("${_item}" _flags)
  list(APPEND TIDE_PC_LIBS_PRIVATE ${_flags})
  # A namespaced target Pkg::Name comes from find_package(Pkg): the consumer needs
  # the same, from CMake itself (Threads) or from the Find module installed below.
  if(_item MATCHES "^([A-Za-z0-9_]+)::")
    set(_pkg "${CMAKE_MATCH_1}")
    if(_pkg STREQUAL "Threads" OR EXISTS "${PROJECT_SOURCE_DIR}/cmake/Find${_pkg}.cmake")
      list(APPEND TIDE_CONFIG_DEPENDENCIES "${_pkg}")
    endif()
  endif()
endforeach()
list(REMOVE_DUPLICATES TIDE_PC_LIBS_PRIVATE)
list(REMOVE_DUPLICATES TIDE_CONFIG_DEPENDENCIES)
string(REPLACE ";" " " TIDE_PC_LIBS_PRIVATE "${TIDE_PC_LIBS_PRIVATE}")

set(TIDE_CONFIG_FIND_DEPENDENCIES "")
foreach(_pkg IN LISTS TIDE_CONFIG_DEPENDENCIES)
  string(APPEND TIDE_CONFIG_FIND_DEPENDENCIES "find_dependency(${_pkg})\n")
  if(NOT _pkg STREQUAL "Threads")
    install(FILES "${PROJECT_SOURCE_DIR}/cmake/Find${_pkg}.cmake"
      DESTINATION "${TIDE_INSTALL_CMAKEDIR}")
  endif()
endforeach()

configure_package_config_file(
  "${PROJECT_SOURCE_DIR}/cmake/tideConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/tideConfig.cmake"
  INSTALL_DESTINATION "${TIDE_INSTALL_CMAKEDIR}")
write_basic_package_version_file(
  "${PROJECT_BINARY_DIR}/tideConfigVersion.cmake"
  VERSION "${PROJECT_VERSION}"
  COMPATIBILITY SameMajorVersion)
install(FILES
  "${PROJECT_BINARY_DIR}/tideConfig.cmake"
  "${PROJECT_BINARY_DIR}/tideConfigVersion.cmake"
  DESTINATION "${TIDE_INSTALL_CMAKEDIR}")

# tide.pc locates the prefix from its own directory (${pcfiledir}), so that an install
# with `cmake --install --prefix DIR` or a moved tree still works.
function(tide_pc_path dir out)
  if(IS_ABSOLUTE "${dir}")
    set(${out} "${dir}" PARENT_SCOPE)
  else()
    set(${out} "\${prefix}/${dir}" PARENT_SCOPE)
  endif()
endfunction()
if(IS_ABSOLUTE "${TIDE_INSTALL_PKGCONFIGDIR}")
  set(TIDE_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
else()
  file(RELATIVE_PATH _up "/_prefix/${TIDE_INSTALL_PKGCONFIGDIR}" "/_prefix")
  string(REGEX REPLACE "/$" "" _up "${_up}")
  set(TIDE_PC_PREFIX "\${pcfiledir}/${_up}")
endif()
tide_pc_path("${CMAKE_INSTALL_LIBDIR}" TIDE_PC_LIBDIR)
tide_pc_path("${CMAKE_INSTALL_INCLUDEDIR}" TIDE_PC_INCLUDEDIR)

# tide.pc is the shared library (`pkg-config --static --libs tide` adds its
# dependencies, for a fully static link with -static); tide-static.pc names libtide.a
# itself, for a program that links tide statically and the rest as usual.
foreach(_pc tide tide-static)
  configure_file("${PROJECT_SOURCE_DIR}/cmake/${_pc}.pc.in" "${PROJECT_BINARY_DIR}/${_pc}.pc" @ONLY)
  install(FILES "${PROJECT_BINARY_DIR}/${_pc}.pc" DESTINATION "${TIDE_INSTALL_PKGCONFIGDIR}")
endforeach()

# After the libraries: tell the user when the dynamic linker will not find libtide.so
# where it was installed, and how to fix it (cmake/TideLinkerCheck.cmake).
install(CODE "set(TIDE_INSTALL_LIBDIR_FOR_CHECK \"${CMAKE_INSTALL_LIBDIR}\")
set(TIDE_SONAME_FOR_CHECK \"libtide.so.${PROJECT_VERSION_MAJOR}\")")
install(SCRIPT "${PROJECT_SOURCE_DIR}/cmake/TideLinkerCheck.cmake")
