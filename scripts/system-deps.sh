#!/bin/sh
# Install the system tools the tests use (Debian packages): iproute2 (ss), procps (ps), busybox (the
# collector is tested under busybox sh), dash, shellcheck, gzip, tar. Installs only what is missing.
set -eu
need=""
command -v ss >/dev/null 2>&1 || need="$need iproute2"
command -v ps >/dev/null 2>&1 || need="$need procps"
command -v busybox >/dev/null 2>&1 || need="$need busybox"
command -v dash >/dev/null 2>&1 || need="$need dash"
command -v shellcheck >/dev/null 2>&1 || need="$need shellcheck"
command -v gzip >/dev/null 2>&1 || need="$need gzip"
command -v tar >/dev/null 2>&1 || need="$need tar"
command -v setpriv >/dev/null 2>&1 || need="$need util-linux"
[ -z "$need" ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "system-deps: missing:$need (install them with your package manager; tests that need them will fail)" >&2
    exit 0
fi
echo "system-deps: installing$need" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $need >/dev/null
