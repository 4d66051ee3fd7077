#!/bin/sh
# Installs what this project needs on Debian (bookworm) and is quiet and quick
# when everything is already there. Runs apt-get as root, or through sudo.
set -eu
need=""
for pkg in emscripten binaryen nodejs cmake ninja-build clang libclang-rt-14-dev \
           valgrind spin pkg-config chromium; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed"; then
    need="$need $pkg"
  fi
done
[ -z "$need" ] && exit 0
if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
echo "setup-debian: installing$need"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# shellcheck disable=SC2086
$sudo apt-get install -y -qq --no-install-recommends $need >/dev/null
echo "setup-debian: done"
