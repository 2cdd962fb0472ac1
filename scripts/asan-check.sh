#!/bin/sh
# Build the C field extractor (tcpmemlib/parsers/_sstok.c) with AddressSanitizer and
# UndefinedBehaviorSanitizer in a scratch clone, and run the ss parser tests against that build
# (both engines, fixtures, hypothesis: SS_PROP_EXAMPLES examples each). Developer check, not part
# of `make test`: the sanitizers must be preloaded into Python, which slows everything down.
# Usage: sh scripts/asan-check.sh [examples]   (from the repository root, after `make setup-dev`;
# PYTHON=/path/to/python to use another environment's interpreter). Checks the committed tree.
set -eu
examples=${1:-2000}
root=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM
git clone -q "$root" "$work/tree"
py=${PYTHON:-"$root/.venv/bin/python"}
include=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
suffix=$("$py" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
cd "$work/tree"
gcc -shared -fPIC -fsanitize=address,undefined -fno-omit-frame-pointer -g -O1 -Wall -Wextra \
    -Wno-unused-parameter -I"$include" tcpmemlib/parsers/_sstok.c \
    -o "tcpmemlib/parsers/_sstok$suffix"
PYTHONPATH="$work/tree" \
LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)" \
ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
SS_PROP_EXAMPLES="$examples" \
    "$py" -m pytest -q -p no:cacheprovider tests/test_ss.py tests/test_fixtures_ss.py \
    tests/test_ss_property.py
