#!/bin/sh
# Install the system tools the tests use (Debian packages): iproute2 (ss, ip netns), procps (ps),
# busybox (the collector is tested under busybox sh), dash, shellcheck, gzip, tar, and the real server
# software of tests/test_real_*.py: redis-server + redis-tools, nginx. Installs only what is missing.
# The packages' own services are NOT started (a policy-rc.d of ours denies it for the install, unless
# the box has one already): the tests start their own redis-server and nginx on loopback.
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
command -v redis-server >/dev/null 2>&1 || need="$need redis-server"
command -v redis-cli >/dev/null 2>&1 || need="$need redis-tools"
command -v nginx >/dev/null 2>&1 || need="$need nginx"
[ -z "$need" ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "system-deps: missing:$need (install them with your package manager; tests that need them will fail)" >&2
    exit 0
fi
echo "system-deps: installing$need" >&2
export DEBIAN_FRONTEND=noninteractive
policy=/usr/sbin/policy-rc.d
ours=""
if [ ! -e "$policy" ]; then
    ours=1
    trap 'rm -f "$policy"' EXIT INT TERM HUP
    printf '#!/bin/sh\n# system-deps.sh (tcpmem): no service starts during this install\nexit 101\n' >"$policy"
    chmod 755 "$policy"
fi
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $need >/dev/null
[ -n "$ours" ] && rm -f "$policy"
exit 0
