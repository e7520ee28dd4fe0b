#!/usr/bin/env bash
# run.sh DURATION [TARGET...] runs fuzz campaigns one after another, each for DURATION
# (a go test -fuzztime value: 10m, 1h, 5000x), and keeps the new corpus entries of each
# in its package's testdata/fuzz/TARGET, where the normal go test runs them as seeds.
#
# A TARGET is a fuzz function name (FuzzDescriptors) or PKG:NAME (./ocifetch:FuzzClassify);
# without targets, every Fuzz function of the module runs. Campaigns run one at a time,
# with -parallel from FUZZ_PARALLEL (default 1: the machine is shared) under nice -n 19.
# FUZZ_MINIMIZE is go test's -fuzzminimizetime (default 20x, not Go's 60s: a worker
# minimizes every new interesting input before it fuzzes on, which for targets that take
# a tenth of a second an exec stalled whole campaigns for a minute at a time). A crasher stops
# nothing: go test writes it to testdata/fuzz/TARGET and the script goes on, then exits 1.
# FUZZ_KEEP (default 25) caps how many new corpus entries one campaign adds to testdata:
# every entry runs in each go test, and some targets take a tenth of a second an input
# (FuzzMerge: three conversions and e2fsck). The rest stay in GOCACHE/fuzz, where the next
# campaign on this machine starts from them.
set -u
cd "$(dirname "$0")/.."

if [ $# -lt 1 ]; then
	echo "usage: fuzz/run.sh DURATION [TARGET...]" >&2
	exit 2
fi
duration=$1
shift
parallel=${FUZZ_PARALLEL:-1}
minimize=${FUZZ_MINIMIZE:-20x}
keep=${FUZZ_KEEP:-25}
module=$(go list -m)
cache=$(go env GOCACHE)/fuzz

# all lists PKG:NAME for every fuzz target in the module.
all() {
	grep -rl --include='*_test.go' '^func Fuzz' . | grep -v '^./bench/' | while read -r f; do
		pkg=./$(dirname "${f#./}")
		grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | sed "s|^func |$pkg:|"
	done | sort -u
}

targets=()
if [ $# -eq 0 ]; then
	mapfile -t targets < <(all)
else
	for t in "$@"; do
		case $t in
		*:*) targets+=("$t") ;;
		*)
			found=$(all | grep ":$t\$" || true)
			if [ -z "$found" ]; then
				echo "run.sh: no fuzz target $t" >&2
				exit 2
			fi
			targets+=($found)
			;;
		esac
	done
fi

status=0
for t in "${targets[@]}"; do
	pkg=${t%%:*}
	name=${t##*:}
	importpath=$module/${pkg#./}
	[ "$pkg" = "." ] && importpath=$module
	corpus=$pkg/testdata/fuzz/$name
	before=$(ls "$corpus" 2>/dev/null | wc -l)
	echo "== $pkg $name for $duration"
	start=$(date +%s)
	if ! nice -n 19 go test -run '^$' -fuzz "^$name\$" -fuzztime "$duration" -fuzzminimizetime "$minimize" -parallel "$parallel" "$pkg"; then
		status=1
	fi
	# New interesting inputs live in the build cache: keep them with the package, at most
	# $keep of them (by name, which is a hash: a sample, not the smallest or the first).
	if [ -d "$cache/$importpath/$name" ]; then
		mkdir -p "$corpus"
		new=$(find "$cache/$importpath/$name" -type f -newermt "@$start" | sort)
		n=$(printf '%s' "$new" | grep -c . || true)
		printf '%s\n' "$new" | grep . | head -n "$keep" | while read -r p; do cp -n "$p" "$corpus/"; done
		echo "== $pkg $name: $n new interesting inputs, kept up to $keep"
	fi
	after=$(ls "$corpus" 2>/dev/null | wc -l)
	echo "== $pkg $name: corpus $before -> $after files in $corpus ($(($(date +%s) - start)) s)"
done
exit $status
