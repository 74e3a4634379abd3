#!/usr/bin/env bash
# Switchboard's two entry points on a fresh Debian 12 machine:
#   ./dev.sh run    install what is missing, build, serve examples/ with the demo bot
#   ./dev.sh test   install what is missing, build (-Werror), run every test, then again under
#                   AddressSanitizer + UndefinedBehaviorSanitizer
set -euo pipefail
cd "$(dirname "$0")"

PACKAGES=(build-essential cmake pkg-config libmicrohttpd-dev liblua5.4-dev lua-cjson-dev
          libyaml-dev libcurl4-openssl-dev libssl-dev python3 curl openssl)

install_packages() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "Installing: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

build() { # build DIR [cmake options...]
  local dir=$1; shift
  cmake -S . -B "$dir" "$@" >/dev/null
  cmake --build "$dir" -j"$(nproc)"
}

case "${1:-}" in
  run)
    shift
    install_packages
    build build -DCMAKE_BUILD_TYPE=Release
    exec ./build/switchboard run --credentials examples/credentials.yml \
      --endpoints examples/endpoints.yml "$@"
    ;;
  test)
    install_packages
    build build -DSB_WERROR=ON
    (cd build && ctest --output-on-failure -j2)
    build build-asan -DSB_WERROR=ON -DSB_ASAN=ON -DSB_UBSAN=ON -DCMAKE_BUILD_TYPE=Debug
    (cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j2)
    ;;
  *)
    echo "usage: ./dev.sh run [switchboard run options] | ./dev.sh test" >&2
    exit 2
    ;;
esac
