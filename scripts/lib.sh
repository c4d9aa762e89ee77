# shellcheck shell=bash
# Shared by scripts/demo and scripts/test (sourced, not run): installs the Debian
# packages tide needs when they are missing, then configures and builds.
#
# Environment:
#   TIDE_BUILD_DIR    build directory (default: build/ in the repository)
#   TIDE_BUILD_TYPE   CMAKE_BUILD_TYPE (default: RelWithDebInfo)
#   TIDE_CMAKE_ARGS   extra configure arguments, e.g. "-DTIDE_SANITIZE=ON"
#   TIDE_NO_APT=1     never call apt-get (check and report only)

TIDE_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TIDE_BUILD_DIR=${TIDE_BUILD_DIR:-$TIDE_ROOT/build}
TIDE_PACKAGES=(cmake make gcc libc6-dev pkg-config python3 libev-dev libmbedtls-dev libcmocka-dev
    openssl ca-certificates python3-aiosmtpd python3-pyftpdlib python3-openssl nginx vsftpd)

tide_say() { printf '%s\n' "==> $*"; }
tide_die() { printf '%s\n' "error: $*" >&2; exit 1; }

# Installs the given Debian packages (default: TIDE_PACKAGES) that are not installed
# yet: apt-get update first, through sudo when not root.
tide_install_packages() {
    local packages=("$@") missing=() p
    [[ ${#packages[@]} -gt 0 ]] || packages=("${TIDE_PACKAGES[@]}")
    if ! command -v dpkg-query >/dev/null; then
        tide_say "not a Debian system: make sure these are installed: ${packages[*]}"
        return 0
    fi
    for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
    done
    [[ ${#missing[@]} -gt 0 ]] || return 0
    if [[ ${TIDE_NO_APT:-0} == 1 ]]; then
        tide_die "missing Debian packages: ${missing[*]}"
    fi
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null ||
            tide_die "missing Debian packages (${missing[*]}) and no sudo: install them as root"
        sudo=(sudo)
    fi
    tide_say "installing Debian packages: ${missing[*]}"
    # Servers the tests start themselves (nginx, vsftpd) must not be started as system
    # services by their packages: that can fail (port 80 or 21 taken, no init) and
    # fail the install. policy-rc.d is Debian's switch for it; one already there wins.
    local policy=/usr/sbin/policy-rc.d added_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
        "${sudo[@]}" chmod 755 "$policy"
        added_policy=1
    fi
    local rc=0
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends "${missing[@]}" || rc=$?
    [[ $added_policy == 0 ]] || "${sudo[@]}" rm -f "$policy"
    [[ $rc == 0 ]] || tide_die "apt-get could not install: ${missing[*]}"
}

# Configures TIDE_BUILD_DIR and builds the given targets (default: everything).
tide_build() {
    local extra=() targets=() t
    # shellcheck disable=SC2206 # TIDE_CMAKE_ARGS is a list of words on purpose
    extra=(${TIDE_CMAKE_ARGS:-})
    tide_say "configuring $TIDE_BUILD_DIR"
    cmake -S "$TIDE_ROOT" -B "$TIDE_BUILD_DIR" \
        -DCMAKE_BUILD_TYPE="${TIDE_BUILD_TYPE:-RelWithDebInfo}" "${extra[@]}" >/dev/null
    for t in "$@"; do targets+=(--target "$t"); done
    tide_say "building${*:+ $*}"
    cmake --build "$TIDE_BUILD_DIR" -j "$(nproc 2>/dev/null || echo 2)" "${targets[@]}"
}
