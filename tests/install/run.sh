#!/usr/bin/env bash
# Installs a tide build into a temporary prefix and builds a consumer against it.
# Usage: run.sh STEP BUILD_DIR WORK_DIR VERSION C_COMPILER [C_FLAGS]
#   STEP install:    cmake --install BUILD_DIR into WORK_DIR/prefix, which must print
#                    how to make the dynamic linker find libtide.so there
#   STEP cmake:      consumer through find_package(tide) (shared and static), plus a
#                    check that a different major version is refused
#   STEP pkgconfig:  consumer through pkg-config: tide.pc (shared), tide-static.pc
#                    (libtide.a; checked with ldd not to need libtide.so), and
#                    tide.pc --static with -static (fully static)
# C_FLAGS go to every consumer compile and link (the sanitizer build passes its flags,
# since a sanitized libtide needs the sanitizer runtime in the program).
# Exit status 77 means skipped (CTest's SKIP_RETURN_CODE).
set -euo pipefail

step=$1 build=$2 work=$3 version=$4 cc=$5 cflags=${6:-}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
prefix=$work/prefix

say() { printf '%s\n' "install test: $*"; }
fail() { say "FAILED: $*" >&2; exit 1; }

case $step in
install)
    rm -rf "$work"
    mkdir -p "$work"
    cmake --install "$build" --prefix "$prefix" >"$work/install.log" 2>&1 ||
        { cat "$work/install.log"; fail "cmake --install"; }
    for f in include/tide.h include/tide/version.h; do
        [[ -f $prefix/$f ]] || fail "$f was not installed"
    done
    # The prefix is one the dynamic linker never searches: the install must say so.
    grep -q "is not searched by the dynamic linker" "$work/install.log" ||
        { cat "$work/install.log"; fail "no message about the dynamic linker not finding $prefix"; }
    grep -q "Wl,-rpath,$prefix/" "$work/install.log" || fail "the message gives no -rpath fix"
    say "installed into $prefix (and the install said how to make libtide.so found)"
    ;;
cmake)
    [[ -d $prefix ]] || fail "nothing installed in $prefix (the install step failed?)"
    out=$work/cmake
    rm -rf "$out"
    cmake -S "$here" -B "$out" -DCMAKE_PREFIX_PATH="$prefix" -DTIDE_PREFIX="$prefix" \
        -DTIDE_REQUIRE_VERSION="$version" -DCMAKE_C_COMPILER="$cc" -DCMAKE_C_FLAGS="$cflags" \
        -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF
    cmake --build "$out"
    "$out/consumer_shared"
    "$out/consumer_static"
    # The version file promises SameMajorVersion: the next major must be refused.
    major=${version%%.*}
    if cmake -S "$here" -B "$out-next" -DCMAKE_PREFIX_PATH="$prefix" -DTIDE_PREFIX="$prefix" \
        -DTIDE_REQUIRE_VERSION="$((major + 1)).0" -DCMAKE_C_COMPILER="$cc" \
        -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF >"$work/next-major.log" 2>&1; then
        fail "find_package(tide $((major + 1)).0) accepted version $version"
    fi
    grep -q "tideConfig.cmake, version: $version" "$work/next-major.log" ||
        { cat "$work/next-major.log"; fail "find_package(tide $((major + 1)).0) failed for another reason"; }
    say "find_package(tide $((major + 1)).0) refused $version, as it should"
    ;;
pkgconfig)
    command -v pkg-config >/dev/null || { say "skipped: pkg-config is not installed"; exit 77; }
    [[ -d $prefix ]] || fail "nothing installed in $prefix (the install step failed?)"
    pc=$(find "$prefix" -name tide.pc -print -quit)
    [[ -n $pc ]] || fail "tide.pc was not installed"
    PKG_CONFIG_PATH=$(dirname "$pc")
    export PKG_CONFIG_PATH
    got=$(pkg-config --modversion tide)
    [[ $got == "$version" ]] || fail "pkg-config says version $got, expected $version"
    libdir=$(cd "$(pkg-config --variable=libdir tide)" && pwd)
    [[ -f $libdir/libtide.so ]] || fail "libdir $libdir from tide.pc holds no libtide.so"
    out=$work/pkgconfig
    rm -rf "$out"
    mkdir -p "$out"
    # pkg-config's output and C_FLAGS are lists of words.
    read -ra flags <<<"$cflags"
    read -ra shared <<<"$(pkg-config --cflags --libs tide)"
    # tide-static.pc: libtide.a itself and what it links (libev, mbedTLS, pthread).
    read -ra static <<<"$(pkg-config --cflags --libs tide-static)"
    "$cc" "${flags[@]}" "$here/consumer.c" -o "$out/consumer_shared" "${shared[@]}" \
        -Wl,-rpath,"$libdir"
    "$cc" "${flags[@]}" "$here/consumer.c" -o "$out/consumer_static" "${static[@]}"
    "$out/consumer_shared"
    "$out/consumer_static"
    # The static program must not need libtide.so (ldd lists it, found or not).
    deps=$(ldd "$out/consumer_static")
    if grep -q libtide <<<"$deps"; then
        echo "$deps"
        fail "consumer_static (tide-static.pc) still needs libtide.so"
    fi
    deps=$(ldd "$out/consumer_shared")
    grep -q "libtide.so.* => $libdir/" <<<"$deps" ||
        fail "consumer_shared does not load libtide.so from $libdir"
    # pkg-config --static with -static: a fully static program (glibc warns about
    # getaddrinfo needing its shared NSS modules at run time; loopback needs none).
    # Sanitizers cannot link statically, and libc.a must be there.
    if [[ -z $cflags ]] && "$cc" -print-file-name=libc.a | grep -q /; then
        read -ra full <<<"$(pkg-config --cflags --static --libs tide)"
        "$cc" -static "$here/consumer.c" -o "$out/consumer_full_static" "${full[@]}" \
            2>"$out/static.log" || { cat "$out/static.log"; fail "pkg-config --static with -static"; }
        "$out/consumer_full_static"
        deps=$(ldd "$out/consumer_full_static" 2>&1 || true) # ldd fails on static programs
        grep -q "not a dynamic executable" <<<"$deps" || fail "consumer_full_static is dynamic: $deps"
        say "pkg-config --static with -static: a fully static program"
    fi
    ;;
*)
    fail "unknown step '$step'"
    ;;
esac
