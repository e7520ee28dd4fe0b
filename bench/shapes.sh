#!/bin/bash
# shapes.sh [RUNS] [SHAPE...]: issue 11's measurement. For each image shape of
# build-shapes.sh, pushed to ./registry on 127.0.0.1:$PORT (default 5177), run RUNS times
# (default 3), interleaved run by run and shape by shape:
#
#   floor            fetch every blob 4 at a time, verify it, decompress it to nothing (./floor)
#   img2ext4         img2ext4 --progress none REF OUT.img, the tree this script is in
#   before           the same built from git commit $BEFORE (when BEFORE is set)
#   img2ext4-1core   img2ext4 under taskset -c 0 (one CPU: GOMAXPROCS and the default jobs follow)
#   before-1core     the same for $BEFORE
#   floor-1core      ./floor -jobs 1 under taskset -c 0
#
# Every step runs under /usr/bin/time -v after a sync; raw numbers in out/shapes/steps.tsv
# (with the load average before each step, and the CPU seconds the registry process spent
# serving the step: it shares the 2 cores with the step), medians and per-run ratios to the floor of the
# same run in out/shapes/summary.md, e2fsck -fn of the last run's images in
# out/shapes/fsck.txt. Needs root only for nothing; skopeo pushes the layouts.
set -euo pipefail
cd "$(dirname "$0")"
BENCH=$PWD
RUNS=${1:-3}
shift || true
SHAPES=${*:-debian-gzip debian-zstd single edge}
PORT=${PORT:-5177}
ADDR=127.0.0.1:$PORT
OUT=$BENCH/out
S=$OUT/shapes
W=$S/work
BIN=$OUT/bin
rm -rf "$W"
mkdir -p "$BIN" "$W"
go build -o "$BIN/" ./floor ./registry ./shapesum
(cd .. && go build -o "$BIN/img2ext4" ./cmd/img2ext4)
PIPES="floor img2ext4 img2ext4-1core floor-1core"
if [ -n "${BEFORE:-}" ]; then
	rm -rf "$OUT/before-src" && mkdir -p "$OUT/before-src"
	git -C .. archive "$BEFORE" | tar -x -C "$OUT/before-src"
	(cd "$OUT/before-src" && go build -o "$BIN/img2ext4-before" ./cmd/img2ext4)
	PIPES="floor img2ext4 before img2ext4-1core before-1core floor-1core"
fi

rm -rf "$S/registry-blobs"
"$BIN/registry" -addr "$ADDR" -dir "$S/registry-blobs" 2>"$S/registry.log" &
REGPID=$!
trap 'kill $REGPID 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -sf "http://$ADDR/v2/" >/dev/null && break; sleep 0.1; done
for shape in $SHAPES; do
	[ -d "$S/$shape" ] || { echo "shapes.sh: no out/shapes/$shape; run ./build-shapes.sh" >&2; exit 1; }
	skopeo copy --quiet --dest-tls-verify=false "oci:$S/$shape:bench" "docker://$ADDR/$shape:latest"
done

{
	echo "date	$(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "commit	$(git -C .. rev-parse --short HEAD)$(git -C .. diff --quiet HEAD -- . ':!bench' || echo ' (+uncommitted changes)')"
	echo "before	${BEFORE:-}"
	echo "nproc	$(nproc)"
	echo "cpu	$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
	echo "go	$(go version)"
	echo "loadavg_start	$(cut -d' ' -f1-3 /proc/loadavg)"
} >"$S/machine.tsv"
STEPS=$S/steps.tsv
printf 'shape\tpipeline\trun\twall_s\tuser_s\tsys_s\tmaxrss_kb\tload1\tregistry_cpu_s\n' >"$STEPS"
TICK=$(getconf CLK_TCK)

# regcpu: the registry's CPU time so far in clock ticks (utime + stime of /proc/PID/stat;
# the fields after the parenthesised command name, which holds no spaces here).
regcpu() { awk '{ print $14 + $15 }' "/proc/$REGPID/stat"; }

# step SHAPE PIPELINE RUN CMD...
step() {
	local s=$1 p=$2 r=$3; shift 3
	local tf=$W/time.$$ load reg0 reg1
	sync
	load=$(cut -d' ' -f1 /proc/loadavg)
	reg0=$(regcpu)
	if ! /usr/bin/time -v -o "$tf" "$@" >"$W/$s.$p.log" 2>&1; then
		echo "shapes.sh: $s/$p failed (run $r):" >&2
		tail -5 "$W/$s.$p.log" >&2
		return 1
	fi
	reg1=$(regcpu)
	awk -v s="$s" -v p="$p" -v r="$r" -v l="$load" -v g="$(((reg1 - reg0) * 100 / TICK))" -F': ' '
		/Elapsed \(wall clock\)/ { n = split($2, a, ":"); w = 0; for (i = 1; i <= n; i++) w = w * 60 + a[i] }
		/User time/ { u = $2 } /System time/ { y = $2 } /Maximum resident set size/ { m = $2 }
		END { printf "%s\t%s\t%s\t%.2f\t%s\t%s\t%s\t%s\t%.2f\n", s, p, r, w, u, y, m, l, g / 100 }' "$tf" >>"$STEPS"
	rm -f "$tf"
}

for r in $(seq "$RUNS"); do
	for shape in $SHAPES; do
		echo "== run $r of $RUNS: $shape" >&2
		REF=$ADDR/$shape:latest
		for p in $PIPES; do
			rm -f "$W/$shape.$p.img"
			case $p in
			floor) step "$shape" "$p" "$r" "$BIN/floor" -jobs 4 "$REF" ;;
			floor-1core) step "$shape" "$p" "$r" taskset -c 0 "$BIN/floor" -jobs 1 "$REF" ;;
			img2ext4) step "$shape" "$p" "$r" "$BIN/img2ext4" --progress none --tmpdir "$W" "$REF" "$W/$shape.$p.img" ;;
			before) step "$shape" "$p" "$r" "$BIN/img2ext4-before" --progress none --tmpdir "$W" "$REF" "$W/$shape.$p.img" ;;
			img2ext4-1core) step "$shape" "$p" "$r" taskset -c 0 "$BIN/img2ext4" --progress none --tmpdir "$W" "$REF" "$W/$shape.$p.img" ;;
			before-1core) step "$shape" "$p" "$r" taskset -c 0 "$BIN/img2ext4-before" --progress none --tmpdir "$W" "$REF" "$W/$shape.$p.img" ;;
			esac || true
			# keep the last run's ext4 images for e2fsck, the others go
			[ "$r" = "$RUNS" ] || rm -f "$W/$shape.$p.img"
		done
	done
done
echo "loadavg_end	$(cut -d' ' -f1-3 /proc/loadavg)" >>"$S/machine.tsv"

: >"$S/fsck.txt"
for f in "$W"/*.img; do
	[ -f "$f" ] || continue
	set +e
	out=$(e2fsck -fn "$f" 2>&1)
	rc=$?
	set -e
	echo "$(basename "$f"): exit $rc; $(echo "$out" | tail -1)" >>"$S/fsck.txt"
	rm -f "$f"
done
"$BIN/shapesum" -dir "$S" >"$S/summary.md"
cat "$S/summary.md" "$S/fsck.txt"
