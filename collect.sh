#!/bin/sh
# shellcheck disable=SC2317 # functions are called through step(); shellcheck cannot see it
# collect.sh - snapshot where a Linux box's TCP socket memory goes, for tcpmem.
#
# Takes periodic snapshots of ss (with skmem), /proc/net/sockstat, meminfo, slabinfo,
# zoneinfo, netstat/snmp, sysctls, ps and the memory cgroups of socket owners, with the
# sockets of every network namespace on the box (containers), into one directory per
# snapshot. Copy this single file to the box and run it there; read the output elsewhere
# with tcpmemlib (load_capture) and the tcpmem notebooks.
#
# USAGE
#   collect.sh [-o DIR] [-i SECONDS] [-n COUNT | -d SECONDS] [-m MB] [-a] [-f] [-N] [-b] [-h]
#     -o DIR      output directory (created; default ./tcpmem-HOST-UTCTIME)
#     -i SECONDS  interval between snapshot starts (default 10; 0 = back to back)
#     -n COUNT    take COUNT snapshots, then exit
#     -d SECONDS  run for SECONDS (default 3600 when neither -n nor -d is given)
#     -m MB       disk budget for DIR, may be fractional (default 200): the oldest
#                 snapshots are deleted first; the budget is never exceeded, even mid-run
#     -a          also record full process command lines (ps_args.txt). Off by default:
#                 command lines can hold secrets; the default records comm only
#     -f          full ss output, verbatim. Default (lean): the ss -i tokens tcpmemlib
#                 does not read and that change at every snapshot (segs_*, bbr:(...),
#                 send, lastsnd/lastrcv/lastack, pacing_rate, delivery_rate, delivered,
#                 busy, *_limited, retrans, rcv_rtt, minrtt) and the blanks ss pads
#                 lines with are dropped: ss_tcp.txt.gz is ~25-35% smaller
#     -N          only this network namespace (the collector's own): no other one is listed
#                 or read (inside one container, or to leave the others alone)
#     -b          at the end, bundle DIR's snapshots into DIR.tar.gz (next to DIR)
#     -h          this help
#   Examples:
#     collect.sh -o /var/tmp/tcpmem -n 1              # one snapshot, then exit
#     collect.sh -o /var/tmp/tcpmem -i 10 -d 3600 -b  # an hour, every 10 s, bundled
#     collect.sh -o /var/tmp/tcpmem -i 60 -m 50       # until ^C, at most 50 MB on disk
#   SIGINT/SIGTERM/SIGHUP: the snapshot in progress is discarded, then the run ends
#   normally (bundling with -b) and exits 0.
#
# REQUIREMENTS
#   POSIX sh (dash, busybox ash, bash), coreutils (or busybox), awk, sed, procps ps (a ps
#   that cannot print pid,ppid,rss,vsz,uid,comm, e.g. busybox's: ps.txt from /proc instead),
#   iproute2 ss (>= 5.2 prints one line per socket with -O; older ss is detected and its
#   multi-line output recorded with ss_oneline=0), gzip, tar (only with -b), nsenter
#   (util-linux or busybox; only to read other network namespaces). No Python.
#   Run as root for full data. Not root: no slabinfo, ss -p shows only the owners of
#   this user's sockets, and other network namespaces are listed but not read; each is
#   said once on stderr and recorded in meta.txt.
#
# OVERHEAD
#   Measured (bench/bench_collect.py [--breakdown], 2 vCPU, kernel 6.18, iproute2 6.1;
#   bench/README.md): at 21k sockets one snapshot costs 1.3x `ss -tanmieOpH` alone (372-409
#   vs 283-311 ms wall, 1.4x CPU), 2.2-2.7x at 2k (54-82 vs 30 ms). Nearly all of the excess
#   is reading ss's text: ss prints it in bursts (>= 0.5 GB/s) that a 64 KB pipe cannot hold,
#   so ss waits while the split awk (~29 ms CPU) and gzip -1 (~29 ms) catch up; their work
#   lands on the wall clock, not beside ss. ss + awk + gzip alone are 1.21x ss's CPU: the
#   1.15x goal is not reachable with gzip (see bench/README.md). Disk: ~39 KiB per snapshot
#   at 2k sockets, ~0.45 MiB at 21k (lean ss text; -f: 43 KiB and 0.65 MiB). ss -p reads
#   every process's fd table: that, not this script, is most of the cost. At -i 10: ~4% of
#   one CPU at 20k sockets. Other network namespaces: one ss (no -p) per namespace, ~6 ms
#   of CPU each: 100 namespaces x 20 connections took 0.72-0.78 s per snapshot (0.69 s CPU).
#
# OUTPUT (the format is specified in docs/design.md section 1)
#   DIR/.partial-PID-NAME/         snapshot being written by the run PID (readers ignore dot
#                                  entries; a run removes only leftovers of dead runs)
#   DIR/20261125T231700.123456789Z/ one snapshot, named by its UTC start time, renamed
#                                  into place complete in one mv:
#     meta.txt sockstat.txt sockstat_after.txt sockstat6.txt meminfo.txt.gz slabinfo.txt.gz
#     slab_aliases.txt.gz protocols.txt.gz netstat.txt.gz snmp.txt.gz zoneinfo.txt.gz
#     sysctl.txt ps.txt.gz [ps_args.txt.gz] ss_tcp.txt.gz ss_udp.txt.gz cgroups.txt netns.txt
#     and for each other network namespace (root: entered with nsenter --net):
#     ss_tcp.nsINODE.txt.gz ss_udp.nsINODE.txt[.gz] sockstat.nsINODE.txt
#   DIR.tar.gz                     with -b: the snapshot directories (relative paths)
#
# EXIT STATUS
#   0  done (also after SIGINT/SIGTERM/SIGHUP)
#   2  usage error (bad option or value)
#   3  a required command is missing (ss, gzip, awk, ...; ps only with -a)
#   4  output directory cannot be created or written
#   5  write failed: disk full or I/O error (the partial snapshot is removed)
#   6  the disk budget (-m) cannot hold even one snapshot
#   7  bundling (-b) failed (tar, gzip or the rename: the message says which)
#   1  any other error
set -eu
# bytes, not characters (awk lengths, sort order); the C locale's messages
LC_ALL=C
export LC_ALL

COLLECTOR_VERSION=3
PROG=${0##*/}

EX_USAGE=2
EX_NOCMD=3
EX_OUTDIR=4
EX_WRITE=5
EX_BUDGET=6
EX_BUNDLE=7

# Sysctls recorded in sysctl.txt (read from /proc/sys; a missing one goes to meta).
SYSCTLS='net.ipv4.tcp_mem net.ipv4.tcp_rmem net.ipv4.tcp_wmem net.ipv4.tcp_moderate_rcvbuf
net.ipv4.tcp_congestion_control net.ipv4.udp_mem net.core.rmem_max net.core.wmem_max
net.core.rmem_default net.core.wmem_default net.core.optmem_max net.core.mem_pcpu_rsv'

# cgroup_of(pid): the cgroup path of pid in the hierarchy that holds the memory controller
# (v1 memory when mounted, else v2 "0::"); "" if none. Shared by the awk programs (needs
# -v mem=v1|v2|none).
AWK_CGROUP='
function cgroup_of(pid,    f, l, p1, p2, c, r, c2, path) {
	f = "/proc/" pid "/cgroup"; p1 = ""; p2 = ""
	while ((getline l < f) > 0) {
		if (substr(l, 1, 3) == "0::") p2 = substr(l, 4)
		else {
			c = index(l, ":"); r = substr(l, c + 1); c2 = index(r, ":")
			if (("," substr(r, 1, c2 - 1) ",") ~ /,memory,/) p1 = substr(r, c2 + 1)
		}
	}
	close(f)
	path = (mem == "v1") ? p1 : p2
	if (path == "") path = (p2 != "") ? p2 : p1
	return path
}'

# gzip level, per snapshot: -6 below 10000 sockets (costs a few ms there, files 25-30%
# smaller), -1 from 10000 on (there gzip's CPU is most of the overhead; measured by
# bench/bench_collect.py). TCPMEM_GZIP_LEVEL=N in the environment fixes it.
GZIP_FIXED=${TCPMEM_GZIP_LEVEL:-}
GZIP_LEVEL=${GZIP_FIXED:-6}
GZIP_SWITCH_SOCKETS=10000
# (TCPMEM_MOUNTS=FILE replaces /proc/self/mounts: lets the tests point the cgroup
# reader at a cgroup v2 layout on a box that has another one.)

usage() {
	sed -n '/^# USAGE/,/^# REQUIREMENTS/{/^# REQUIREMENTS/d;s/^# \{0,1\}//;p;}' "$0"
	sed -n '/^# EXIT STATUS/,/^set -eu/{/^set -eu/d;s/^# \{0,1\}//;p;}' "$0"
}

say() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() {
	code=$1
	shift
	say "error: $*"
	exit "$code"
}

is_uint() {
	case $1 in '' | *[!0-9]*) return 1 ;; esac
}

# now: sets ts_name (snapshot name, 20261125T231700.123456789Z) and ts_iso
# (2026-11-25T23:17:00.123456789Z) from one clock reading.
now() {
	case $clock in
	date-ns)
		t=$(date -u '+%Y%m%dT%H%M%S.%NZ %Y-%m-%dT%H:%M:%S.%NZ %s %N')
		case $t in
		*N*)
			# this date has no %N (busybox): pick another clock, once
			detect_clock
			now
			return
			;;
		esac
		;;
	file-mtime)
		# busybox date has no %N; a fresh file's mtime carries sub-second time.
		: >"$out/.clock.$$"
		t=$(TZ=UTC0 stat -c '%y %Y' "$out/.clock.$$" | sed 's/^\([0-9]*\)-\([0-9]*\)-\([0-9]*\) \([0-9]*\):\([0-9]*\):\([0-9]*\)\.\([0-9]*\) .* \([0-9]*\)$/\1\2\3T\4\5\6.\7Z \1-\2-\3T\4:\5:\6.\7Z \8 \7/')
		;;
	*)
		# seconds + a run-wide sequence number: unique and sortable, not sub-second.
		seq_no=$((seq_no + 1))
		t=$(date -u '+%Y%m%dT%H%M%S %Y-%m-%dT%H:%M:%S %s')
		f=$(printf '%09d' "$seq_no")
		# shellcheck disable=SC2086 # three words, no glob characters
		set -- $t
		t="$1.${f}Z $2.${f}Z $3 000000000"
		;;
	esac
	# shellcheck disable=SC2086 # three words, no glob characters
	set -- $t
	ts_name=$1
	ts_iso=$2
	ts_s=$3
	ms=${4%??????}
	ts_ms=$((${3}000 + 1$ms - 1000))
}

# detect_clock: called when date has no %N. A fresh file's mtime (stat %y) carries
# sub-second time; without it, seconds + a sequence number.
detect_clock() {
	clock=seq
	if command -v stat >/dev/null 2>&1; then
		: >"$out/.clock.$$"
		case $(TZ=UTC0 stat -c %y "$out/.clock.$$" 2>/dev/null) in
		*.[0-9][0-9][0-9]*) clock=file-mtime ;;
		esac
	fi
	say "warning: date has no %N; snapshot names use clock=$clock"
}

# How to run ss: -O (one line per socket) exists since iproute2 5.2.
detect_ss() {
	if ss_version=$(ss -OV 2>/dev/null); then
		ss_oneline=1
		ss_opts=-tuanmieOpH
		ss_ns_opts=-tuanmieOH
	else
		ss_oneline=0
		ss_opts=-tuanmiepH
		ss_ns_opts=-tuanmieH
		ss_version=$(ss -V 2>&1)
	fi
	nl='
'
	ss_version=${ss_version%%"$nl"*}
}

# Static facts about the box, read once per run (while the first ss runs); what this
# run cannot see is said once (box_missing).
detect_box() {
	# whole lines, no word splitting: a hostname may hold blanks
	hostname=
	kernel=
	IFS= read -r hostname </proc/sys/kernel/hostname 2>/dev/null || hostname=$(uname -n)
	IFS= read -r kernel </proc/sys/kernel/osrelease 2>/dev/null || kernel=$(uname -r)
	page_size=$(getconf PAGESIZE 2>/dev/null ||
		awk '/^KernelPageSize:/ { print $2 * 1024; exit }' /proc/self/smaps)
	ids=$(id)
	uid=${ids#uid=}
	uid=${uid%%[!0-9]*}
	case $ids in
	"uid=$uid("*) user=${ids#"uid=$uid("} user=${user%%)*} ;;
	*) user=$uid ;;
	esac
	box_missing
}

# Before the first ss (its awk reads the cgroups of socket owners at its end):
# one awk for the online CPUs and the cgroup hierarchies.
detect_cgroups() {
	# One awk: online CPUs (the kernel's list, "0-3,8-11"); the v1 memory and v2
	# cgroup mounts; whether the v2 root offers the memory controller.
	# shellcheck disable=SC2046 # four words
	set -- $(awk '
		FILENAME ~ /online$/ {
			n = split($0, part, ",")
			for (i = 1; i <= n; i++) cpus += (split(part[i], r, "-") == 2) ? r[2] - r[1] + 1 : 1
		}
		FILENAME ~ /mounts$/ && $3 == "cgroup" && v1 == "" && ("," $4 ",") ~ /,memory,/ { v1 = $2 }
		FILENAME ~ /mounts$/ && $3 == "cgroup2" && v2 == "" { v2 = $2 }
		END {
			v2mem = 0
			if (v2 != "") {
				f = v2 "/cgroup.controllers"
				if ((getline line < f) > 0 && (" " line " ") ~ / memory /) v2mem = 1
			}
			print (cpus ? cpus : "-"), (v1 != "" ? v1 : "-"), (v2 != "" ? v2 : "-"), v2mem
		}' /sys/devices/system/cpu/online "${TCPMEM_MOUNTS:-/proc/self/mounts}")
	cpus=${1#-}
	cg_v1=${2#-}
	cg_v2=${3#-}
	if [ -n "$cg_v1" ] && [ -n "$cg_v2" ]; then
		cgroup_version=hybrid
	elif [ -n "$cg_v1" ]; then
		cgroup_version=1
	elif [ -n "$cg_v2" ]; then
		cgroup_version=2
	else
		cgroup_version=none
	fi
	# The hierarchy that holds the memory controller: v1 memory if mounted (hybrid
	# boxes account memory there), else v2 when its root offers "memory".
	cg_mem=none
	if [ -n "$cg_v1" ]; then
		cg_mem=v1
	elif [ "$4" = 1 ]; then
		cg_mem=v2
	fi
}

box_missing() {
	# What this run cannot see: said once here, recorded in every meta.txt.
	static_missing=
	can_slabinfo=1
	if [ ! -r /proc/slabinfo ]; then
		can_slabinfo=0
		static_missing="${static_missing}missing=slabinfo.txt.gz: /proc/slabinfo is not readable (uid $uid; root only)
"
	fi
	if [ "$uid" != 0 ]; then
		static_missing="${static_missing}missing=ss_tcp.txt.gz: users:(...) owners limited to processes of uid $uid (not root)
missing=ss_udp.txt.gz: users:(...) owners limited to processes of uid $uid (not root)
"
	fi
	if [ "$cg_mem" = none ]; then
		static_missing="${static_missing}missing=cgroups.txt: no memory cgroup hierarchy mounted (stat records absent)
"
	fi
	if [ ! -r /proc/zoneinfo ]; then
		static_missing="${static_missing}missing=zoneinfo.txt.gz: /proc/zoneinfo is not readable
"
	fi
	if [ -n "$static_missing" ]; then
		printf '%s' "$static_missing" | sed "s/^missing=/$PROG: warning: /" >&2
	fi
}

# Disk use of the output directory in KiB (what du reports: allocated blocks).
used_kb() {
	# shellcheck disable=SC2046
	set -- $(du -sk "$out" 2>/dev/null)
	echo "${1:-0}"
}

# Names of complete snapshots, oldest first.
list_snapshots() {
	for d in "$out"/[0-9]*T*Z; do
		[ ! -d "$d" ] || echo "${d##*/}"
	done
}

# Remove a snapshot so that no reader sees it half-deleted; subtract it from $used.
remove_snapshot() {
	# shellcheck disable=SC2046
	set -- "$1" $(du -sk "$out/$1" 2>/dev/null)
	mv "$out/$1" "$out/.deleting-$$-$1" && rm -rf "$out/.deleting-$$-$1"
	used=$((used - ${2:-0}))
}

# make_room NEED_KB: delete oldest snapshots until used + NEED_KB fits in the budget.
# $used is kept up to date as snapshots come and go (one du of DIR every 30
# snapshots and when near the budget, not a du of thousands of files every time).
# Returns 1 if it cannot.
make_room() {
	if [ "$fresh" = 1 ]; then
		fresh=0
	elif [ $((taken % 30)) = 0 ] || [ $((used + $1 * 2)) -gt "$budget_kb" ]; then
		used=$(used_kb)
	fi
	while [ $((used + $1)) -gt "$budget_kb" ]; do
		oldest=$(list_snapshots | sed -n '1p')
		[ -n "$oldest" ] || return 1
		remove_snapshot "$oldest"
		deleted=$((deleted + 1))
		used=$(used_kb)
	done
	return 0
}

# over_budget: true if the directory (with the partial snapshot) exceeds the budget.
over_budget() {
	[ "$(used_kb)" -gt "$budget_kb" ]
}

disk_full() {
	avail=$(df -Pk "$out" 2>/dev/null | awk 'NR == 2 { print $4 + 0 }')
	[ -n "$avail" ] && [ "$avail" -lt 64 ]
}

# ss_start DIR: in the background, one ss run for TCP and UDP (ss -p scans every
# process's fds, most of its cost: once, not twice), split by the Netid column into
# DIR/ss_tcp.txt.gz and DIR/ss_udp.txt.gz; at its end the same awk writes
# DIR/cgroups.txt, so that nothing but meta.txt is left to do once ss is done. Exit
# statuses: ss's in DIR/.rc.ss, the split's in DIR/.rc.split, gzip's (or head's) is
# the job's. With $cap set, ss_tcp.txt.gz is cut at $cap bytes (then over budget).
# /proc/net/sockstat is read right before ss starts (sockstat.txt) and right after it
# exits (sockstat_after.txt): the two bracket the moment ss saw the sockets.
ss_start() {
	if [ -n "$cap" ]; then
		ss_run "$1" 2>/dev/null | ss_text "$1" | gzip -"$GZIP_LEVEL" 2>>"$1/.err.pipe" |
			head -c "$cap" >"$1/ss_tcp.txt.gz" 2>>"$1/.err.pipe" &
	else
		ss_run "$1" 2>/dev/null | ss_text "$1" | gzip -"$GZIP_LEVEL" >"$1/ss_tcp.txt.gz" 2>>"$1/.err.pipe" &
	fi
	ss_pid=$!
}

# ss_run DIR: sockstat, ss (its exit status to DIR/.rc.ss), sockstat again; then the
# other network namespaces (ss_netns), while the split awk catches up with ss's text.
ss_run() {
	proc_copy /proc/net/sockstat "$1/sockstat.txt"
	ss "$ss_opts" 2>"$1/.err.ss"
	echo $? >"$1/.rc.ss"
	proc_copy /proc/net/sockstat "$1/sockstat_after.txt"
	ss_netns "$1"
}

# ss_netns DIR: DIR/netns.txt (netns_scan); then, for each network namespace but this
# one: its sockstat (DIR/sockstat.nsINODE.txt: /proc/PID/net/sockstat, or read inside it
# when only a bind mount keeps it) and, after a "\001ns INODE" line, ss run inside it
# with nsenter --net, without -p (stdout: the split awk routes those lines to the
# namespace's files). -p would scan every process's fds again in each namespace (~30 ms
# each here): the owners come instead from one scan of the fds of the processes in other
# namespaces (netns_owners), added by the split awk as users:((...)) in ss's own form.
# A failed ss: "INODE STATUS" in DIR/.rc.ns, stderr in DIR/.err.ns. Not root or no
# nsenter: "missing=" lines in DIR/.missing.ns.
ss_netns() {
	# the list netns_fg made while ss ran; if it is not done yet (ss was quicker), a
	# scan of our own (its netns.txt then replaces netns_fg's, see snapshot)
	if [ -e "$1/.netns.done" ]; then
		tag="fg"
	else
		tag=job
		netns_scan "$1" .netns.job.txt .nspids.job >"$1/.netns.job" || return 0
	fi
	list="$1/.netns.$tag"
	[ -s "$list" ] || return 0
	if [ -n "$netns_skip" ]; then
		while read -r ino pid path; do
			echo "missing=ss_tcp.ns$ino.txt.gz: network namespace $ino not read: $netns_skip"
		done <"$list" >"$1/.missing.ns"
		return 0
	fi
	netns_owners "$1" ".nspids.$tag"
	# ss in one namespace costs ~7 ms of CPU, most of it ss's start: from 8 namespaces on,
	# two workers share them (the second one's text waits in DIR/.ns.b, at most $nscap
	# bytes: beyond that its namespaces are recorded as cut)
	n=0
	while read -r _; do n=$((n + 1)); done <"$list"
	if [ "$n" -lt 8 ]; then
		ns_worker "$1" "" <"$list"
		return 0
	fi
	ns_worker "$1" 1 <"$list" | head -c "$nscap" >"$1/.ns.b" &
	b=$!
	ns_worker "$1" 0 <"$list"
	wait "$b" || :
	size=$(wc -c <"$1/.ns.b" 2>/dev/null) || size=$nscap
	if [ $((size)) -lt "$nscap" ]; then
		cat "$1/.ns.b"
	else
		i=0
		while read -r ino _; do
			i=$((i + 1))
			[ $((i % 2)) = 1 ] || continue
			echo "missing=ss_tcp.ns$ino.txt.gz: cut: the disk budget (-m) is nearly used up"
		done <"$list" >>"$1/.missing.cut"
	fi
	rm -f "$1/.ns.b"
}

# ns_worker DIR PART: for the namespaces listed on stdin (ss_netns; every second one from
# the second (PART 0) or the first (PART 1), or all (PART "")): sockstat, marker, ss.
ns_worker() {
	i=0
	while read -r ino pid path; do
		i=$((i + 1))
		[ -z "$2" ] || [ $((i % 2)) = "$2" ] || continue
		if [ "$pid" != - ]; then
			proc_copy "/proc/$pid/net/sockstat" "$1/sockstat.ns$ino.txt"
		else
			nsenter --net="$path" cat /proc/net/sockstat >"$1/sockstat.ns$ino.txt" 2>/dev/null </dev/null || :
		fi
		printf '\001ns %s\n' "$ino"
		nsenter --net="$path" ss "$ss_ns_opts" 2>>"$1/.err.ns" </dev/null && continue
		st=$?
		# the second worker's text cut at $nscap (head exited): said as cut by ss_netns
		[ "$st" != 141 ] || [ "$2" != 1 ] || break
		if [ -e "$path" ]; then
			echo "$ino $st" >>"$1/.rc.ns"
		else
			# an expected race, not a failure: its last process exited meanwhile
			echo "missing=ss_tcp.ns$ino.txt.gz: network namespace $ino went away during the snapshot" >>"$1/.missing.gone"
		fi
	done
}

# netns_owners DIR PIDS: on stdout (to the split awk, before the namespaces' ss text),
# "\002INODE\t("NAME",pid=P,fd=F),..." for each socket held by a process in another
# namespace (DIR/PIDS: their /proc/PID/fd paths), from one ls -l of
# their fd directories; NAME as ss prints it (cut at the first ")"), from the Name line
# of /proc/PID/status, un-escaped to the ss files' form (newline as \n, see ss_split).
netns_owners() {
	awk -v dir="$1" -v pidsf="$1/$2" '
		function name_of(pid,    f, l, v, i, c, r) {
			f = "/proc/" pid "/status"
			v = ""
			if ((getline l < f) > 0 && substr(l, 1, 6) == "Name:\t") v = substr(l, 7)
			close(f)
			# the kernel writes "\\" for a backslash and "\n" for a newline
			r = ""
			for (i = 1; i <= length(v); i++) {
				c = substr(v, i, 1)
				if (c == "\\" && substr(v, i + 1, 1) == "\\") i++
				r = r c
			}
			i = index(r, ")")
			return i ? substr(r, 1, i - 1) : r
		}
		BEGIN {
			cmd = "exec ls -ln"
			n = 0
			while ((getline l < pidsf) > 0) { cmd = cmd " " l; n++; one = l }
			close(pidsf)
			if (!n) exit 0
			# one directory: ls prints no "DIR:" header line
			if (n == 1) { pid = one; sub(/^\/proc\//, "", pid); sub(/\/fd$/, "", pid) }
			while (((cmd " 2>/dev/null") | getline l) > 0) {
				if (substr(l, 1, 6) == "/proc/" && substr(l, length(l) - 3) == "/fd:") {
					pid = substr(l, 7, length(l) - 10)
					continue
				}
				a = index(l, " -> socket:[")
				if (!a) continue
				ino = substr(l, a + 12)
				sub(/\].*/, "", ino)
				m = split(substr(l, 1, a - 1), f, " ")
				if (!(pid in names)) names[pid] = name_of(pid)
				e = "(\"" names[pid] "\",pid=" pid ",fd=" f[m] ")"
				# (not "own[ino] = (ino in own) ? ...": the assignment creates own[ino] first)
				if (ino in own) own[ino] = own[ino] "," e
				else own[ino] = e
			}
			close(cmd " 2>/dev/null")
			for (ino in own) printf "\002%s\t%s\n", ino, own[ino]
		}'
}

# netns_fg DIR: while ss runs, in the foreground (a step): netns_scan into DIR/netns.txt,
# the list into DIR/.netns.fg, then DIR/.netns.done (ss_netns uses the list once it exists).
netns_fg() {
	netns_scan "$1" netns.txt .nspids.fg >"$1/.netns.fg" && : >"$1/.netns.done"
}

# netns_scan DIR FILE: the network namespaces on the box, known by inode: the targets of
# /proc/PID/ns/net (each with its lowest pid), plus those kept by a bind mount in
# /run/netns (ip netns; the name recorded). Writes DIR/FILE (netns.txt's form: "INODE\t
# PID\tNAME\tCGROUP" per namespace, this run's own first, "-" for none) and DIR/PIDS
# (the /proc/PID/fd of each process in another namespace), and prints "INODE PID PATH"
# for each other one (PATH: the file nsenter --net opens; a name's if it has one).
netns_scan() {
	# one ls: the links (-> net:[INODE]), then under "/run/netns:" the bind mounts, each
	# with the inode of the namespace mounted there (-i; stat sees through the mount)
	# shellcheck disable=SC2012 # fixed names (/proc/PID/ns/net); ip netns names: see below
	ls -lni /proc/[0-9]*/ns/net /run/netns/ 2>/dev/null |
		awk -v out="$1/$2" -v pidsf="$1/$3" -v self="$$" -v mem="$cg_mem" -v ownonly="$own_netns_only" "$AWK_CGROUP"'
		/^\/run\/netns\/?:$/ { named = 1; next }
		!named {
			n = index($0, " -> net:[")
			if (!n) next
			# inodes stay strings (above 2^31: some awks would print them as 4.02653e+09)
			ino = substr($0, n + 9)
			sub(/\].*/, "", ino)
			pid = substr($0, 1, n - 1)
			sub(/\/ns\/net$/, "", pid)
			sub(/.*\/proc\//, "", pid)
			pid += 0
			if (pid == self) own = ino
			nsof[pid] = ino
			if (!(ino in low)) { low[ino] = pid; order[++k] = ino }
			else if (pid < low[ino]) low[ino] = pid
			next
		}
		# inode mode links uid gid size month day time|year name
		NF >= 10 && $1 ~ /^[0-9]+$/ {
			ino = $1
			name = $0
			sub(/^ *[0-9]+ +[^ ]+ +[0-9]+ +[^ ]+ +[^ ]+ +[0-9]+ +[^ ]+ +[0-9]+ +[^ ]+ /, "", name)
			if (ino in nm) next
			nm[ino] = name
			if (!(ino in low)) { low[ino] = "-"; order[++k] = ino }
		}
		END {
			# the fd directories of the processes in other namespaces (netns_owners)
			printf "" > pidsf
			if (ownonly != 1)
				for (pid in nsof) if (nsof[pid] != own) print "/proc/" pid "/fd" > pidsf
			close(pidsf)
			if (own != "") line(own)
			for (i = 1; i <= k && ownonly != 1; i++) {
				ino = order[i]
				if (ino == own) continue
				line(ino)
				if (ino in nm) path = "/run/netns/" nm[ino]
				else path = "/proc/" low[ino] "/ns/net"
				print ino, low[ino], path
			}
			close(out)
		}
		function line(ino,    cg) {
			cg = (low[ino] != "-") ? cgroup_of(low[ino]) : ""
			printf "%s\t%s\t%s\t%s\n", ino, low[ino], (ino in nm) ? nm[ino] : "-", (cg != "") ? cg : "-" > out
		}'
}

# proc_copy SRC DST: copy a small text file with shell builtins (no process started).
proc_copy() {
	while IFS= read -r l; do
		printf '%s\n' "$l"
	done <"$1" >"$2" 2>/dev/null || :
}

# ss_text DIR: stdin = ss output, stdout = the TCP text: ss_split, then (with $sort_lines)
# sort: sorted lines compress ~10% better (ss prints them in hash order), and sorting
# ~3000 lines costs a few ms; from $GZIP_SWITCH_SOCKETS on it is not done (time there).
# Exit statuses in DIR/.rc.split and DIR/.rc.sort.
ss_text() {
	if [ "$sort_lines" = 1 ]; then
		{
			ss_split "$1" 2>>"$1/.err.pipe"
			echo $? >"$1/.rc.split"
		} 2>/dev/null | {
			sort 2>>"$1/.err.pipe"
			echo $? >"$1/.rc.sort"
		} 2>/dev/null
	else
		{
			ss_split "$1" 2>>"$1/.err.pipe"
			echo $? >"$1/.rc.split"
		} 2>/dev/null
	fi
}

# ss_split DIR: stdin = ss -tu output; UDP lines through gzip to DIR/ss_udp.txt.gz, the
# rest to stdout. The socket-owning pids (",pid=N," after the quoted comm) are kept, and
# at the end DIR/cgroups.txt is written: "pid" records for each of them, then "stat"
# records for each distinct cgroup, each cgroup read once. Exit status 1 if the UDP gzip
# failed (a write error stops awk with status 2). The number of lines written to each
# ss file is appended to DIR/.lines (see file_lines).
# Lean ($lean = 1, the default; -f turns it off): in the same pass, the ss -i tokens that
# tcpmemlib does not read and that change at every snapshot (so compress badly) are
# dropped: the span from segs_out/segs_in up to rcv_space (or the first of rcv_ssthresh,
# notsent, minrtt, snd_wnd, rcv_wnd), that is segs_*, data_segs_*, bbr:(...), send,
# lastsnd/lastrcv/lastack, pacing_rate, delivery_rate, delivered, app_limited, busy,
# *_limited, unacked, retrans, lost, ..., rcv_rtt; then minrtt; and the blanks ss pads
# every line with. Never inside users:((...)), whose names are the processes' own: "))"
# ends that block (ss cuts a comm at its first ")"), and only a cut point past it counts
# (else the line is kept verbatim). index()/substr() only: mawk's gsub with one regular
# expression for the same tokens cost 6x the CPU of the whole split at 20k sockets.
# Names are printed raw by ss: a newline in one (prctl(PR_SET_NAME) can set any bytes)
# would cut its socket record in two, and sort would part the halves. A line that opens
# users:(( without closing it ("))") is joined here with the lines that follow, the
# newline stored as the two characters \n (a record is one line); other bytes stay raw.
ss_split() {
	TCPMEM_UDP_GZ="$1/ss_udp.txt.gz" awk -F ',pid=' -v udp="$1/ss_udp.txt.gz" -v cgout="$1/cgroups.txt" -v lean="$lean" \
		-v lines="$1/.lines" -v nscap="$nscap" \
		-v level="$GZIP_LEVEL" -v mem="$cg_mem" -v v1="$cg_v1" -v v2="$cg_v2" -v dir="$1" "$AWK_CGROUP"'
		function slim(line, u,    a, b, t, q, m, j) {
			a = index(line, " segs_")
			if (a > u) {
				t = substr(line, a + 1)
				b = index(t, " rcv_space:")
				if (!b) b = index(t, " rcv_ssthresh:")
				if (!b) b = index(t, " notsent:")
				if (!b) b = index(t, " minrtt:")
				if (!b) b = index(t, " snd_wnd:")
				if (!b) b = index(t, " rcv_wnd:")
				if (!b) return substr(line, 1, a - 1)
				# the rest is kernel tokens, one blank apart, then the padding
				t = substr(t, b)
				q = index(t, "  ")
				if (q) t = substr(t, 1, q - 1)
				else if (substr(t, length(t)) == " ") t = substr(t, 1, length(t) - 1)
				m = index(t, " minrtt:")
				if (m) {
					j = index(substr(t, m + 1), " ")
					t = j ? substr(t, 1, m - 1) substr(t, m + j) : substr(t, 1, m - 1)
				}
				return substr(line, 1, a - 1) t
			}
			# no -i span (TIME-WAIT, LISTEN, UDP): only the padding, if all blanks
			a = index(line, " ino:")
			if (a > u) {
				t = substr(line, a)
				q = index(t, "  ")
				if (q && substr(t, q) == substr(SP, 1, length(t) - q + 1)) return substr(line, 1, a + q - 2)
				if (!q && substr(t, length(t)) == " ") return substr(line, 1, length(line) - 1)
			}
			return line
		}
		function val(f,    v) { v = ""; if ((getline v < f) <= 0) v = ""; close(f); return v }
		function add_owners(    a, i) {
			a = index($0, " ino:")
			if (!a || !match(substr($0, a + 5), /^[0-9]+/)) return
			i = substr($0, a + 5, RLENGTH)
			if (!(i in own) || !match($0, /^[^ ]+ +[^ ]+ +[^ ]+ +[^ ]+ +[^ ]+ +[^ ]+/)) return
			$0 = substr($0, 1, RLENGTH) " users:(" own[i] ")" substr($0, RLENGTH + 1)
		}
		function ns_close() {
			if (ns == "") return
			if (close(tcpf) || close(udpf)) bad = 1
			printf "%d ss_tcp.ns%s.txt.gz\n%d ss_udp.ns%s.txt.gz\n", nst, ns, nsu, ns >> lines
		}
		BEGIN {
			# the path goes through the environment: no quoting of it in a command line
			udpgz = "exec gzip -" level " >\"$TCPMEM_UDP_GZ\""
			SP = "    "
			while (length(SP) < 65536) SP = SP SP
		}
		{
			c = substr($0, 1, 1)
			if (c < " " && c != "\t") {
				# "\002INODE\tOWNERS": the owners of a socket of another namespace
				# (netns_owners); "\001ns INODE": the lines that follow are ss run in that
				# namespace (ss_netns): to ss_tcp.nsINODE.txt and ss_udp.nsINODE.txt
				# (gzipped once ss is done)
				if (c == "\002") {
					t = index($0, "\t")
					own[substr($0, 2, t - 2)] = substr($0, t + 1)
					next
				}
				if (c == "\001") {
					ns_close()
					ns = substr($0, 5)
					# its sockstat and ss files take a block each at least
					nsbytes += 8192
					tcpf = dir "/ss_tcp.ns" ns ".txt"
					udpf = dir "/ss_udp.ns" ns ".txt"
					printf "" > tcpf
					printf "" > udpf
					nst = 0; nsu = 0
					next
				}
			}
			# a socket of another namespace: its owners, where ss -p would print them
			if (ns != "") add_owners()
			# "))" ends the users:((...)) block (a name cannot hold ")"). A block opened and
			# not closed means a name held a newline, printed raw by ss: join the next
			# physical lines (at most 15: a comm is 15 bytes) with the two characters \n.
			u = index($0, "))")
			if (!u && index($0, "users:((")) {
				for (k = 0; k < 15 && !u; k++) {
					if ((getline rest) <= 0) break
					$0 = $0 "\\n" rest
					u = index($0, "))")
				}
			}
			# a line starting with blank continues the socket above (ss without -O)
			if (c != " " && c != "\t") to_udp = (substr($0, 1, 4) == "udp ")
			line = lean ? slim($0, u) : $0
			if (ns != "") {
				nsbytes += length(line) + 1
				if (nscap > 0 && nsbytes > nscap) {
					if (!(ns in cut)) printf "missing=ss_tcp.ns%s.txt.gz: cut: the disk budget (-m) is nearly used up\n", ns >> (dir "/.missing.cut")
					cut[ns] = 1
				} else if (to_udp) { print line > udpf; nsu++ }
				else { print line > tcpf; nst++ }
			} else if (to_udp) { print line | udpgz; nudp++ }
			else { print line; ntcp++ }
		}
		NF > 1 {
			for (i = 2; i <= NF; i++) {
				# ",pid=N,fd=M)": ss cuts comm at its first ")", so a name cannot fake it
				if ($i !~ /^[0-9]+,fd=[0-9]+\)/) continue
				pid = $i + 0
				if (!(pid in seen)) { seen[pid] = 1; pids[++npids] = pid }
			}
		}
		END {
			printf "" | udpgz
			if (rc = close(udpgz)) { printf "gzip %s: exit status %s\n", udp, rc > "/dev/stderr"; bad = 1 }
			# the lines each ss file holds, for meta.txt (file=)
			ns_close()
			printf "%d ss_tcp.txt.gz\n%d ss_udp.txt.gz\n", ntcp, nudp >> lines
			# the plain text of the other namespaces at its largest, for the budget estimate
			if (nsbytes) printf "%d\n", nsbytes > (dir "/.nsplain")
			close(lines)
			printf "" > cgout
			for (n = 1; n <= npids; n++) {
				pid = pids[n]
				path = cgroup_of(pid)
				if (path == "") continue
				printf "pid\t%s\t%s\n", pid, path > cgout
				if (!(path in cg)) { cg[path] = 1; cgs[++ncg] = path }
			}
			for (n = 1; n <= ncg; n++) {
				path = cgs[n]
				if (mem == "v2") {
					d = v2 path
					f = d "/memory.stat"
					while ((getline l < f) > 0) {
						if (substr(l, 1, 5) == "sock ") { printf "stat\t%s\tsock\t%s\n", path, substr(l, 6) > cgout; break }
					}
					close(f)
					v = val(d "/memory.current")
					if (v != "") printf "stat\t%s\tmemory.current\t%s\n", path, v > cgout
				} else if (mem == "v1") {
					d = v1 path
					v = val(d "/memory.kmem.tcp.usage_in_bytes")
					if (v != "") printf "stat\t%s\tkmem.tcp.usage_in_bytes\t%s\n", path, v > cgout
					v = val(d "/memory.kmem.tcp.limit_in_bytes")
					if (v != "") printf "stat\t%s\tkmem.tcp.limit_in_bytes\t%s\n", path, v > cgout
				}
			}
			if (close(cgout)) bad = 1
			exit bad
		}'
}

# copy_proc DIR: the small /proc text files and the sysctls, in one awk process.
copy_proc() {
	awk -v dir="$1" -v sysctls="$SYSCTLS" -v slab="$can_slabinfo" '
	function copy(src, dst, quiet,    line, n) {
		n = 0
		while ((getline line < src) > 0) { print line > dst; n++ }
		close(src); close(dst)
		if (n == 0 && !quiet) missing = missing "missing=" substr(dst, length(dir) + 2) ": " src " not readable or empty\n"
	}
	BEGIN {
		copy("/proc/net/sockstat6", dir "/sockstat6.txt")
		copy("/proc/meminfo", dir "/meminfo.txt")
		copy("/proc/net/protocols", dir "/protocols.txt")
		copy("/proc/net/netstat", dir "/netstat.txt")
		copy("/proc/net/snmp", dir "/snmp.txt")
		# (gzipped by gz_small with the others: no gzip of their own; zoneinfo is ~10-40
		# KB, slabinfo ~30 KB)
		# (not readable: said once, box_missing)
		copy("/proc/zoneinfo", dir "/zoneinfo.txt", 1)
		if (slab) copy("/proc/slabinfo", dir "/slabinfo.txt")
		out = dir "/sysctl.txt"
		printf "" > out
		n = split(sysctls, names, /[ \n]+/)
		for (i = 1; i <= n; i++) {
			name = names[i]
			if (name == "") continue
			f = "/proc/sys/" name
			gsub(/\./, "/", f)
			if ((getline v < f) > 0) print name " = " v > out
			else missing = missing "missing=sysctl.txt: " name " (" f " not readable)\n"
			close(f)
		}
		close(out)
		printf "%s", missing > (dir "/.missing")
	}'
}

# slab_aliases_to FILE: "<cache> <target>" for each merged cache (a symlink in /sys/kernel/slab).
slab_aliases_to() {
	# shellcheck disable=SC2012 # one ls for ~400 links beats a readlink per link
	ls -l /sys/kernel/slab 2>/dev/null | awk '$(NF - 1) == "->" { print $(NF - 2), $NF }' >"$1"
}

# gz_small DIR: the larger small text files, gzipped in place by one gzip (readers take
# X and X.gz alike): about 12 KB less per snapshot (with zoneinfo and slabinfo, ~70 KB of
# text). Level 6, or $GZIP_LEVEL when that is lower (-1 from 10000 sockets: CPU first).
gz_small() {
	d=$1
	small_level=6
	[ "$GZIP_LEVEL" -ge 6 ] || small_level=$GZIP_LEVEL
	set --
	for f in ps.txt ps_args.txt netstat.txt snmp.txt slab_aliases.txt protocols.txt meminfo.txt zoneinfo.txt slabinfo.txt; do
		[ ! -f "$d/$f" ] || set -- "$@" "$d/$f"
	done
	[ $# = 0 ] || { wc -l -- "$@" >>"$d/.lines" && gzip -"$small_level" -- "$@"; }
}

# file_lines DIR: one "file=<name>\t<stored bytes>\t<lines>" line per file in DIR (no
# dot files; before meta.txt is written). Lines = newlines of the uncompressed text: wc's
# count for a plain file, for a .gz file the count its writer left in DIR/.lines ("N name"
# lines: the split awk, gz_small), "-" if none did (that writer failed).
file_lines() {
	wc -lc -- "$1"/* 2>/dev/null | awk -v cnt="$1/.lines" '
		BEGIN {
			while ((getline l < cnt) > 0) {
				n = split(l, f, " ")
				name = f[n]
				sub(/.*\//, "", name)
				lines[name] = f[1]
			}
		}
		# (the last line of several is the total, without a "/")
		index($0, "/") {
			name = $0
			sub(/.*\//, "", name)
			# meta.txt itself is being written: it has no file= line
			if (name == "meta.txt") next
			names[++k] = name
			size[name] = $2
			# wc counts the newlines of a plain file; for a .gz file, its writer did
			if (name !~ /\.gz$/) lines[name] = $1
		}
		END {
			for (i = 1; i <= k; i++) {
				name = names[i]
				if (name in lines) n = lines[name]
				else if (name ~ /\.gz$/ && substr(name, 1, length(name) - 3) in lines) n = lines[substr(name, 1, length(name) - 3)]
				else n = "-"
				printf "file=%s\t%s\t%s\n", name, size[name], n
			}
		}'
}

# step NAME CMD...: run CMD; if it fails, record "failed=NAME: <first stderr line>" in
# meta.txt and go on, unless the failure is a full disk (3) or the budget (2).
failed=
step() {
	step_name=$1
	shift
	[ "$stop" = 0 ] || return 1
	if "$@" 2>"$p/.err"; then
		return 0
	fi
	if over_budget; then
		return 2
	fi
	if disk_full; then
		return 3
	fi
	reason=$(sed -n '1p' "$p/.err" 2>/dev/null)
	failed="${failed}failed=$step_name: ${reason:-exit status non-zero}
"
	return 0
}

# snapshot: write one snapshot into .partial-PID-NAME (PID: this run's, so that runs
# sharing DIR never take each other's) and rename it into place.
# Returns 0 (done), 1 (interrupted: discarded), 2 (over budget), 3 (disk full).
snapshot() {
	now
	snap=$ts_name
	start_iso=$ts_iso
	start_s=$ts_s
	start_ms=$ts_ms
	p="$out/.partial-$$-$snap"
	partial=$p
	mkdir "$p" 2>/dev/null || { disk_full && return 3; die "$EX_OUTDIR" "cannot create $p"; }
	failed=
	# ss (the long part) runs in the background while the rest is read.
	[ -n "$box_known" ] || detect_cgroups
	ss_start "$p"
	[ -n "$box_known" ] || detect_box
	box_known=1
	rc=0
	{
		step netns netns_fg "$p" &&
			step copy_proc copy_proc "$p" &&
			step "ps -eo pid,ppid,rss,vsz,uid,comm (ps_source=$ps_source)" ps_to "$p/ps.txt" &&
			step slab_aliases slab_aliases_to "$p/slab_aliases.txt" &&
			{ [ "$args" = 0 ] || step "ps -ww -eo pid,args" ps_args_to "$p/ps_args.txt"; } &&
			step "gzip small files" gz_small "$p"
	} || rc=$?
	if [ -n "$ps_warn" ]; then
		say "warning: ps cannot print pid,ppid,rss,vsz,uid,comm (busybox ps?): ps.txt is read from /proc/PID/status (ps_source=proc)"
		ps_warn=
	fi
	ss_rc=0
	wait "$ss_pid" || ss_rc=$?
	if [ "$stop" != 0 ]; then
		# a signal interrupted the wait: stop the pipeline, discard the snapshot
		kill "$ss_pid" 2>/dev/null || true
		wait "$ss_pid" 2>/dev/null || true
		ss_pid=
		return 1
	fi
	ss_pid=
	[ "$rc" = 0 ] || return "$rc"
	# Text cut to stay within the budget is said in meta: ss_tcp.txt.gz at $cap bytes
	# (head exits 0: only its size tells), the other namespaces' text at $nscap (the
	# split awk and ss_netns wrote .missing.cut).
	if [ -n "$cap" ]; then
		size=$(wc -c <"$p/ss_tcp.txt.gz" 2>/dev/null) || size=0
		[ $((size)) -lt "$cap" ] || echo "missing=ss_tcp.txt.gz: cut at $cap bytes: the disk budget (-m) is nearly used up" >>"$p/.missing.cut"
	fi
	if [ "$ss_rc" != 0 ]; then
		over_budget && return 2
		disk_full && return 3
		failed="${failed}failed=ss $ss_opts: $(sed -n '1p' "$p/.err.pipe" 2>/dev/null) (pipeline exit status $ss_rc)
"
	fi
	ss_exit=
	read -r ss_exit <"$p/.rc.ss" 2>/dev/null || true
	if [ -s "$p/.err.ss" ] || [ "$ss_exit" != 0 ]; then
		failed="${failed}failed=ss $ss_opts: $(sed -n '1p' "$p/.err.ss") (exit ${ss_exit:-?})
"
	fi
	split_exit=
	read -r split_exit <"$p/.rc.split" 2>/dev/null || true
	sort_exit=0
	[ "$sort_lines" = 0 ] || read -r sort_exit <"$p/.rc.sort" 2>/dev/null || sort_exit=
	if [ "$split_exit" != 0 ] || [ "$sort_exit" != 0 ]; then
		over_budget && return 2
		disk_full && return 3
		reason=$(sed -n '1p' "$p/.err.pipe" 2>/dev/null)
		[ "$split_exit" = 0 ] || failed="${failed}failed=ss split (ss_udp.txt.gz, cgroups.txt): $reason (exit ${split_exit:-?})
"
		[ "$sort_exit" = 0 ] || failed="${failed}failed=sort (ss_tcp.txt.gz): $reason (exit ${sort_exit:-?})
"
	fi
	[ ! -f "$p/.rc.ns" ] || netns_failed "$p"
	# ss_netns scanned again (netns_fg was not done in time): its netns.txt is the one
	[ ! -e "$p/.netns.job.txt" ] || mv -f "$p/.netns.job.txt" "$p/netns.txt"
	# the other namespaces' ss files, gzipped by one gzip; empty ones stay plain (no
	# data block; gzip's per-file work is most of its time on ~100 small files)
	set --
	for f in "$p"/ss_*.ns*.txt; do
		[ ! -s "$f" ] || set -- "$@" "$f"
	done
	if [ $# -gt 0 ] && ! gzip -"$GZIP_LEVEL" -- "$@" 2>"$p/.err"; then
		over_budget && return 2
		disk_full && return 3
		failed="${failed}failed=gzip ss_*.ns*.txt: $(sed -n '1p' "$p/.err")
"
	fi
	now
	{
		echo "collector_version=$COLLECTOR_VERSION"
		echo "hostname=$hostname"
		echo "kernel=$kernel"
		echo "ss_version=$ss_version"
		echo "page_size=$page_size"
		echo "cpus=$cpus"
		echo "start=$start_iso"
		echo "end=$ts_iso"
		echo "user=$user"
		echo "uid=$uid"
		echo "ss_oneline=$ss_oneline"
		echo "args=$args"
		echo "interval_s=$interval"
		echo "cgroup_version=$cgroup_version"
		echo "ss_command=ss $ss_opts"
		echo "ss_netns_command=ss $ss_ns_opts"
		if [ "$own_netns_only" = 1 ]; then echo "netns_scope=own"; else echo "netns_scope=all"; fi
		echo "clock=$clock"
		echo "gzip_level=$GZIP_LEVEL"
		if [ "$lean" = 1 ]; then echo "ss_filter=lean"; else echo "ss_filter=full"; fi
		echo "ps_source=$ps_source"
		printf '%s' "$static_missing"
		[ ! -s "$p/.missing" ] || cat "$p/.missing"
		[ -z "$netns_skip" ] || echo "missing=netns: other network namespaces not read: $netns_skip"
		[ ! -s "$p/.missing.ns" ] || cat "$p/.missing.ns"
		[ ! -s "$p/.missing.gone" ] || cat "$p/.missing.gone"
		[ ! -s "$p/.missing.cut" ] || cat "$p/.missing.cut"
		for f in sockstat.txt sockstat_after.txt; do
			[ -s "$p/$f" ] || echo "missing=$f: /proc/net/sockstat not readable or empty"
		done
		printf '%s' "$failed"
		file_lines "$p"
	} >"$p/meta.txt" 2>/dev/null || { over_budget && return 2; return 3; }
	# meta.txt's own size, last: a reader tells a cut or altered meta.txt (collector_version >= 3)
	# shellcheck disable=SC2046
	set -- $(wc -c <"$p/meta.txt")
	echo "meta_bytes=$1" >>"$p/meta.txt" 2>/dev/null || { over_budget && return 2; return 3; }
	ns_plain=0
	[ ! -s "$p/.nsplain" ] || read -r ns_plain <"$p/.nsplain" || ns_plain=0
	rm -f "$p"/.err* "$p"/.rc.* "$p"/.missing* "$p/.lines" "$p"/.netns* "$p"/.nspids* "$p/.nsplain"
	# shellcheck disable=SC2046
	set -- $(du -sk "$p")
	last_kb=$1
	[ $((used + last_kb)) -le "$budget_kb" ] || return 2
	[ ! -e "$out/$snap" ] || die 1 "$out/$snap already exists (two collectors on one directory?)"
	mv "$p" "$out/$snap" || return 3
	partial=
	used=$((used + last_kb))
	# the largest a snapshot took, counting the other namespaces' plain text while it lived
	peak_kb=$((last_kb + ns_plain / 1024))
	[ "$peak_kb" -le "$max_kb" ] || max_kb=$peak_kb
	taken=$((taken + 1))
	return 0
}

# netns_failed DIR: a failed= line for each namespace whose ss failed (DIR/.rc.ns).
netns_failed() {
	reason=$(sed -n '1p' "$1/.err.ns" 2>/dev/null)
	while read -r ino st; do
		failed="${failed}failed=ss in network namespace $ino: ${reason:-no message} (exit $st)
"
	done <"$1/.rc.ns"
}

# detect_netns: can this run enter other network namespaces (root, nsenter)? Said once.
detect_netns() {
	netns_skip=
	uid_now=$(id -u)
	if [ "$uid_now" != 0 ]; then
		netns_skip="not root (uid $uid_now): nsenter needs CAP_SYS_ADMIN"
	elif ! command -v nsenter >/dev/null 2>&1; then
		netns_skip="no nsenter command (util-linux or busybox)"
	fi
	[ -z "$netns_skip" ] || say "warning: other network namespaces are listed in netns.txt but not read: $netns_skip"
}

# ps_to FILE: ps.txt. The first time, ps's output is checked (header, first row): busybox
# ps refuses "uid" (and prints RSS as "15m"), which would leave ps.txt empty at every
# snapshot. If it cannot print these columns, or there is no ps, ps.txt is read from
# /proc (ps_proc_to) from then on, said once, meta ps_source=proc.
ps_to() {
	if [ "$ps_source" = proc ]; then
		ps_proc_to "$1"
		return
	fi
	ps -eo pid,ppid,rss,vsz,uid,comm >"$1" 2>/dev/null || :
	[ "$ps_source" = unchecked ] || return 0
	h=
	a=
	{
		read -r h _ _ _ _ _
		read -r a b c d e _
	} <"$1" || :
	if [ "$h" = PID ] && is_uint "$a" && is_uint "$b" && is_uint "$c" && is_uint "$d" && is_uint "$e"; then
		ps_source="ps"
		return
	fi
	ps_source=proc
	# (said by snapshot(): a step's stderr goes to a file)
	ps_warn=1
	ps_proc_to "$1"
}

# ps_proc_to FILE: ps.txt from /proc/PID/status, one awk for every process, in ps's
# format: PID PPID RSS VSZ UID COMMAND (KiB; UID = effective uid; COMMAND = the Name
# line, in which the kernel writes a newline as \n and a backslash as \\; no VmRSS
# (kernel threads): 0, as ps shows). A process gone meanwhile is left out.
ps_proc_to() {
	set -- "$1" /proc/[0-9]*
	awk -v out="$1" '
		BEGIN {
			printf "%7s %7s %8s %8s %5s %s\n", "PID", "PPID", "RSS", "VSZ", "UID", "COMMAND" > out
			for (i = 2; i < ARGC; i++) {
				f = ARGV[i] "/status"
				name = ""; pid = ""; ppid = ""; uid = ""; rss = 0; vsz = 0
				while ((getline l < f) > 0) {
					k = substr(l, 1, index(l, ":"))
					if (k == "Name:") name = substr(l, 7)
					else if (k == "Pid:" || k == "PPid:" || k == "Uid:" || k == "VmRSS:" || k == "VmSize:") {
						split(l, v, /[ \t]+/)
						if (k == "Pid:") pid = v[2]
						else if (k == "PPid:") ppid = v[2]
						else if (k == "Uid:") uid = v[3]
						else if (k == "VmSize:") vsz = v[2]
						else { rss = v[2]; break }
					}
				}
				close(f)
				if (pid != "" && uid != "") printf "%7s %7s %8s %8s %5s %s\n", pid, ppid, rss, vsz, uid, name > out
			}
			close(out)
			exit 0
		}' "$@"
}
# -ww: never cut command lines at a terminal's width (procps); busybox ps has no -w and
# does not cut them when writing to a file.
ps_args_to() { ps -ww -eo pid,args >"$1" 2>/dev/null || ps -eo pid,args >"$1"; }

discard_partial() {
	if [ -n "$partial" ] && [ -d "$partial" ]; then
		rm -rf "$partial"
	fi
	partial=
}

cleanup() {
	[ -z "$ss_pid" ] || kill "$ss_pid" 2>/dev/null || true
	discard_partial
	[ -z "$sleep_pid" ] || kill "$sleep_pid" 2>/dev/null || true
	[ -z "${out:-}" ] || [ ! -e "$out/.clock.$$" ] || rm -f "$out/.clock.$$"
}

on_signal() {
	stop=1
	[ -z "$sleep_pid" ] || kill "$sleep_pid" 2>/dev/null || true
}

bundle_out() {
	set --
	for d in "$out"/[0-9]*T*Z; do
		[ ! -d "$d" ] || set -- "$@" "${d##*/}"
	done
	if [ $# = 0 ]; then
		say "no snapshot to bundle"
		return 0
	fi
	tarball="${out%/}.tar.gz"
	extra=
	[ ! -f "$out/phases.tsv" ] || extra=phases.tsv
	# Every stage's exit status is checked: tar's through a file (a pipeline's status is
	# only its last command's in POSIX sh), gzip's and mv's directly.
	tmp="$tarball.partial.$$"
	tar_rc=
	gz_rc=0
	# shellcheck disable=SC2086 # $extra is empty or one plain name
	{
		tar -C "$out" -cf - $extra "$@" 2>"$tmp.err"
		echo $? >"$tmp.rc"
	} | gzip -6 >"$tmp" 2>>"$tmp.err" || gz_rc=$?
	read -r tar_rc <"$tmp.rc" 2>/dev/null || tar_rc=
	reason=$(sed -n '1p' "$tmp.err" 2>/dev/null)
	rm -f "$tmp.rc" "$tmp.err"
	if [ "$tar_rc" = 0 ] && [ "$gz_rc" = 0 ] && mv "$tmp" "$tarball"; then
		say "bundle: $tarball ($# snapshots)"
	else
		rm -f "$tmp"
		die "$EX_BUNDLE" "cannot write $tarball (tar exit ${tar_rc:-?}, gzip exit $gz_rc): ${reason:-mv failed}"
	fi
}

main() {
	out=
	interval=10
	count=
	duration=
	bundle=0
	own_netns_only=0
	budget_mb=200
	args=0
	lean=1
	while getopts :o:i:n:d:m:afNbh opt; do
		case $opt in
		o) out=$OPTARG ;;
		i) interval=$OPTARG ;;
		n) count=$OPTARG ;;
		d) duration=$OPTARG ;;
		m) budget_mb=$OPTARG ;;
		a) args=1 ;;
		f) lean=0 ;;
		b) bundle=1 ;;
		N) own_netns_only=1 ;;
		h)
			usage
			exit 0
			;;
		:) die "$EX_USAGE" "-$OPTARG needs a value (see -h)" ;;
		*) die "$EX_USAGE" "unknown option -$OPTARG (see -h)" ;;
		esac
	done
	shift $((OPTIND - 1))
	[ $# = 0 ] || die "$EX_USAGE" "unexpected argument: $1 (see -h)"
	is_uint "$interval" || die "$EX_USAGE" "-i wants whole seconds, got '$interval'"
	[ -z "$count" ] || is_uint "$count" || die "$EX_USAGE" "-n wants a count, got '$count'"
	[ -z "$duration" ] || is_uint "$duration" || die "$EX_USAGE" "-d wants whole seconds, got '$duration'"
	case $budget_mb in
	'' | *[!0-9.]* | *.*.* | .) die "$EX_USAGE" "-m wants megabytes (e.g. 200 or 0.5), got '$budget_mb'" ;;
	esac
	[ -n "$count" ] || [ -n "$duration" ] || duration=3600
	[ "${count:-1}" -gt 0 ] || die "$EX_USAGE" "-n must be at least 1"
	case $GZIP_LEVEL in [1-9]) ;; *) die "$EX_USAGE" "TCPMEM_GZIP_LEVEL must be 1..9" ;; esac

	for c in ss awk sed gzip du df ls date uname id cat mv rm mkdir grep sleep head sort wc; do
		command -v "$c" >/dev/null 2>&1 || die "$EX_NOCMD" "required command not found: $c (PATH=$PATH)"
	done
	[ "$bundle" = 0 ] || command -v tar >/dev/null 2>&1 || die "$EX_NOCMD" "required command not found: tar (needed by -b)"
	[ "$args" = 0 ] || command -v ps >/dev/null 2>&1 || die "$EX_NOCMD" "required command not found: ps (needed by -a)"
	# MB (maybe fractional) -> KiB, in shell arithmetic
	mb_int=${budget_mb%%.*}
	mb_frac=
	case $budget_mb in *.*) mb_frac=${budget_mb#*.} ;; esac
	mb_frac=$(printf '%.6s' "${mb_frac}000000")
	budget_kb=$(((${mb_int:-0} * 1024) + (1$mb_frac - 1000000) * 1024 / 1000000))
	[ "$budget_kb" -gt 0 ] || die "$EX_USAGE" "-m must be more than 0"

	[ -n "$out" ] || out="./tcpmem-$(uname -n)-$(date -u +%Y%m%dT%H%M%SZ)"
	# a directory made here is empty: no du of it before the first snapshot
	fresh=0
	[ -d "$out" ] || { mkdir -p "$out" 2>/dev/null && fresh=1; } || die "$EX_OUTDIR" "cannot create output directory $out"
	{ [ -d "$out" ] && [ -w "$out" ] && [ -x "$out" ]; } || die "$EX_OUTDIR" "output directory $out is not writable"

	partial=
	sleep_pid=
	ss_pid=
	cap=
	nscap=0
	used=0
	stop=0
	seq_no=0
	taken=0
	deleted=0
	max_kb=0
	trap cleanup EXIT
	trap 'on_signal' INT TERM HUP

	# Leftovers of killed runs. .partial-PID-NAME / .deleting-PID-NAME of a run still alive
	# (another collector writing into DIR) are its own: left alone. (Names without a pid
	# come from collectors before version 2.)
	for stale in "$out"/.partial-* "$out"/.deleting-*; do
		[ -e "$stale" ] || continue
		name=${stale##*/}
		name=${name#.partial-}
		name=${name#.deleting-}
		case $name in
		[0-9]*-[0-9]*T*Z) [ ! -d "/proc/${name%%-*}" ] || continue ;;
		esac
		say "removing $stale (left by a killed run)"
		rm -rf "$stale"
	done

	clock=date-ns
	box_known=
	detect_ss
	ps_source=unchecked
	ps_warn=
	command -v ps >/dev/null 2>&1 || ps_source=proc
	detect_netns

	t0=
	exit_code=0
	while [ "$stop" = 0 ]; do
		# room for the next snapshot: 1.5x the largest so far, or a guess from the
		# socket count before the first one (64 bytes per socket + 96 KiB: about 2x
		# what gzip -6 gives, and the small files at 4 KiB a block).
		socks=0
		read -r _ _ socks _ </proc/net/sockstat || true
		case $socks in '' | *[!0-9]*) socks=0 ;; esac
		if [ -z "$GZIP_FIXED" ]; then
			GZIP_LEVEL=6
			[ "$socks" -lt "$GZIP_SWITCH_SOCKETS" ] || GZIP_LEVEL=1
		fi
		# sorted lines below the switch; never the multi-line form of an old ss
		sort_lines=0
		[ "$ss_oneline" = 0 ] || [ "$socks" -ge "$GZIP_SWITCH_SOCKETS" ] || sort_lines=1
		if [ "$max_kb" -gt 0 ]; then
			need=$((max_kb * 3 / 2))
		else
			need=$((96 + socks / 16))
		fi
		make_room "$need" || true
		# Near the budget, cut ss_tcp.txt.gz at what is left so that it cannot overshoot.
		cap=
		left=$((budget_kb - used))
		# (160 KiB kept for the other files: ~16 small ones, and zoneinfo and slabinfo,
		# plain for a moment before gz_small)
		room=$((left > 160 ? (left - 160) * 1024 : 1024))
		[ "$left" -ge $((need * 4)) ] || cap=$((room / 2))
		# The other namespaces' ss text (plain until ss is done) is bounded too, so that
		# namespaces appearing mid-run cannot push DIR over the budget: $nscap for the
		# split awk's files and as much for the second worker's raw text (both on disk for
		# a moment; see ss_netns). Text cut is said in meta (missing=... cut).
		nscap=$((room / 4))
		src=0
		snapshot || src=$?
		[ -n "$t0" ] || t0=$start_s
		case $src in
		0) ;;
		1)
			discard_partial
			break
			;;
		2)
			discard_partial
			if [ -z "$(list_snapshots)" ]; then
				say "error: the budget -m $budget_mb (${budget_kb} KiB) cannot hold one snapshot (needs about ${last_kb:-$need} KiB or more)"
				exit_code=$EX_BUDGET
				break
			fi
			# make room by deleting the oldest, then try again at once
			oldest=$(list_snapshots | sed -n '1p')
			remove_snapshot "$oldest"
			deleted=$((deleted + 1))
			continue
			;;
		3)
			discard_partial
			say "error: write failed in $out: disk full? (snapshot discarded)"
			exit_code=$EX_WRITE
			break
			;;
		esac
		[ -z "$count" ] || [ "$taken" -lt "$count" ] || break
		next_s=$((start_s + interval))
		[ -z "$duration" ] || [ "$next_s" -lt $((t0 + duration)) ] || break
		# sleep until interval after this snapshot's start (to the millisecond)
		[ "$stop" = 0 ] || break
		now
		wait_ms=$((start_ms + interval * 1000 - ts_ms))
		if [ "$wait_ms" -gt 0 ]; then
			sleep "$((wait_ms / 1000)).$(printf '%03d' $((wait_ms % 1000)))" &
			sleep_pid=$!
			wait "$sleep_pid" || true
			sleep_pid=
		fi
	done
	[ "$deleted" = 0 ] || say "budget -m $budget_mb: deleted the $deleted oldest snapshot(s)"
	[ "$exit_code" != 0 ] || say "$taken snapshot(s) in $out"
	if [ "$bundle" = 1 ]; then
		bundle_out
	fi
	exit "$exit_code"
}

main "$@"
