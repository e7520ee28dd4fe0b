#!/usr/bin/env bash
# cover.sh PKG:NAME [COVERPKG...] prints the statement coverage that one fuzz target's
# whole corpus reaches: its seeds (f.Add), its files in PKG/testdata/fuzz/NAME and the
# inputs campaigns on this machine left in $(go env GOCACHE)/fuzz/MODULE/PKG/NAME. Go
# prints no coverage while fuzzing; this runs the corpus once with -coverprofile instead.
#
# COVERPKG are the import paths whose statements count (-coverpkg); the default is the
# package of the target (for the cross-package targets in fuzz/, name the packages they
# exercise). The cache inputs are copied into the testdata of a temporary copy of the
# module, never into this one. It runs under nice -n 19; the profile is kept in
# $FUZZ_COVER_OUT (default: removed with the copy).
set -eu
cd "$(dirname "$0")/.."

if [ $# -lt 1 ] || [ "${1#*:}" = "$1" ]; then
	echo "usage: fuzz/cover.sh PKG:NAME [COVERPKG...]" >&2
	exit 2
fi
pkg=${1%%:*}
name=${1##*:}
shift
module=$(go list -m)
importpath=$module/${pkg#./}
[ "$pkg" = "." ] && importpath=$module
if [ $# -gt 0 ]; then
	coverpkg=$(IFS=,; echo "$*")
else
	coverpkg=$importpath
fi
cache=$(go env GOCACHE)/fuzz/$importpath/$name

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The module without its git metadata and the benchmark outputs (a symlink to gigabytes).
tar -C . --exclude=./.git --exclude=./bench/out -cf - . | tar -C "$tmp" -xf -
corpus=$tmp/$pkg/testdata/fuzz/$name
mkdir -p "$corpus"
intest=$(find "$pkg/testdata/fuzz/$name" -type f 2>/dev/null | wc -l)
incache=0
if [ -d "$cache" ]; then
	incache=$(find "$cache" -type f | wc -l)
	find "$cache" -type f -exec cp -n {} "$corpus/" \;
fi
files=$(find "$corpus" -type f | wc -l)

start=$(date +%s)
cd "$tmp"
if ! nice -n 19 go test -count=1 -run "^$name\$" -coverprofile="$tmp/cover.out" -coverpkg="$coverpkg" "$pkg" >"$tmp/test.log" 2>&1; then
	cat "$tmp/test.log" >&2
	echo "cover.sh: $pkg $name: the corpus run failed" >&2
	exit 1
fi
total=$(go tool cover -func="$tmp/cover.out" | tail -n 1 | awk '{print $NF}')
[ -n "${FUZZ_COVER_OUT:-}" ] && cp "$tmp/cover.out" "$FUZZ_COVER_OUT"
echo "$pkg $name: $total of statements in $coverpkg ($files corpus files: $intest in testdata, $incache in the cache; seeds too; $(($(date +%s) - start)) s)"
