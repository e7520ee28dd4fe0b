#!/bin/bash
# e2e.sh [RUNS]: end-to-end comparison of registry → filesystem pipelines on the image built
# by build-image.sh, each run RUNS times (default 3), interleaved run by run.
#
#   floor     fetch every blob from the registry, verify it and gunzip it to nothing, 4 at a time
#   floor-serial  the same one layer after the other, in order (layers are applied in order)
#   skopeo    skopeo copy → oci:DIR, umoci unpack, mkfs.ext4 -d (with headroom), resize2fs -M
#   skopeo-raw  the same with `umoci raw unpack` (rootfs only: no mtree manifest, no config)
#   ggcr      go-containerregistry mutate.Extract piped into hcsshim tar2ext4 (./ggcrext4)
#   img2ext4  img2ext4 REF OUT.img (ext4) when its --help mentions ext4, else --format dir
#   img2ext4-dir, img2ext4-tar   img2ext4 --format dir / --format tar, for reference
#
# The registry is ./registry (go-containerregistry's registry, blobs on disk) on 127.0.0.1.
# Each step runs under /usr/bin/time -v: wall time, CPU, peak RSS. Raw numbers go to
# out/e2e/steps.tsv and out/e2e/sizes.tsv, the medians to out/e2e/summary.md; e2fsck -fn
# verdicts of the ext4 outputs (last run) to out/e2e/fsck.txt. Needs root (umoci keeps
# owners, mkfs.ext4 -d), Go and apt for the tools. Nothing here passes or fails on time.
set -euo pipefail
cd "$(dirname "$0")"
BENCH=$PWD
RUNS=${1:-3}
PORT=${PORT:-5077}
ADDR=127.0.0.1:$PORT
REF=$ADDR/bench:latest
OUT=$BENCH/out
E=$OUT/e2e
W=$OUT/e2e/work
BIN=$OUT/bin

pkgs=()
command -v skopeo >/dev/null || pkgs+=(skopeo)
command -v umoci >/dev/null || pkgs+=(umoci)
command -v mkfs.ext4 >/dev/null || pkgs+=(e2fsprogs)
[ -x /usr/bin/time ] || pkgs+=(time)
if [ ${#pkgs[@]} -gt 0 ]; then
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}"
fi
[ -d "$OUT/oci" ] || { echo "e2e.sh: no out/oci; run ./build-image.sh first" >&2; exit 1; }

# Start from an empty work directory so that no output of an earlier series is checked.
rm -rf "$W"
mkdir -p "$BIN" "$W"
go build -o "$BIN/" ./floor ./ggcrext4 ./registry
(cd .. && go build -o "$BIN/img2ext4" ./cmd/img2ext4)

# The registry, stopped on exit by its own process id.
rm -rf "$OUT/registry-blobs"
"$BIN/registry" -addr "$ADDR" -dir "$OUT/registry-blobs" 2>"$E/registry.log" &
REGPID=$!
trap 'kill $REGPID 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -sf "http://$ADDR/v2/" >/dev/null && break; sleep 0.1; done
./push.sh "$ADDR"

# Not `img2ext4 --help | grep -q`: with pipefail, grep's early exit can fail the pipeline.
help=$("$BIN/img2ext4" --help 2>&1 || true)
if grep -q ext4 <<<"$help"; then
	IMG2EXT4_EXT4=1
else
	IMG2EXT4_EXT4=0
	echo "e2e.sh: this img2ext4 has no ext4 output yet; running --format dir and --format tar only" >&2
fi

{
	echo "date	$(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "commit	$(git -C .. rev-parse --short HEAD)$(git -C .. diff --quiet HEAD -- . ':!bench' || echo ' (+uncommitted changes)')"
	echo "nproc	$(nproc)"
	echo "cpu	$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
	echo "mem	$(awk '/MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
	echo "disk	$(df -h --output=source,fstype,size "$OUT" | tail -1 | tr -s ' ')"
	echo "kernel	$(uname -r)"
	echo "img2ext4_ext4	$IMG2EXT4_EXT4"
	echo "skopeo	$(skopeo --version)"
	echo "umoci	$(umoci --version)"
	echo "e2fsprogs	$(mkfs.ext4 -V 2>&1 | head -1)"
	echo "go	$(go version)"
	echo "loadavg_start	$(cut -d' ' -f1-3 /proc/loadavg)"
} >"$E/machine.tsv"

STEPS=$E/steps.tsv
SIZES=$E/sizes.tsv
printf 'pipeline\trun\tstep\twall_s\tuser_s\tsys_s\tmaxrss_kb\n' >"$STEPS"
printf 'pipeline\trun\toutput\tapparent_bytes\tdisk_bytes\n' >"$SIZES"

# step PIPELINE RUN STEP CMD...: run CMD under /usr/bin/time -v and record it.
step() {
	local p=$1 r=$2 s=$3; shift 3
	local tf=$W/time.$$
	sync # untimed: earlier steps' dirty pages are not this step's cost
	if ! /usr/bin/time -v -o "$tf" "$@" >"$W/$p.$s.log" 2>&1; then
		echo "e2e.sh: $p/$s failed (run $r):" >&2
		tail -20 "$W/$p.$s.log" >&2
		printf '%s\t%s\t%s\tFAILED\t\t\t\n' "$p" "$r" "$s" >>"$STEPS"
		return 1
	fi
	awk -v p="$p" -v r="$r" -v s="$s" -F': ' '
		/Elapsed \(wall clock\)/ { n = split($2, a, ":"); w = 0; for (i = 1; i <= n; i++) w = w * 60 + a[i] }
		/User time/ { u = $2 } /System time/ { y = $2 } /Maximum resident set size/ { m = $2 }
		END { printf "%s\t%s\t%s\t%.2f\t%s\t%s\t%s\n", p, r, s, w, u, y, m }' "$tf" >>"$STEPS"
	rm -f "$tf"
}

# size PIPELINE RUN PATH: apparent and allocated bytes of PATH.
size() {
	printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$(basename "$3")" \
		"$(du -s --apparent-size -B1 "$3" | cut -f1)" "$(du -s -B1 "$3" | cut -f1)" >>"$SIZES"
}

# mkfs_sized ROOTFS IMG: mkfs.ext4 -d into an image with 20% + 64 MiB of headroom over the
# tree's apparent size (an exact fit fails with "Could not allocate block").
mkfs_sized() {
	local kb
	kb=$(du -s --apparent-size -k "$1" | cut -f1)
	mkfs.ext4 -q -F -d "$1" "$2" "$(((kb * 12 / 10 + 65536) / 1024))M"
}
export -f mkfs_sized

FAILED=()
for r in $(seq "$RUNS"); do
	echo "== run $r of $RUNS" >&2

	step floor "$r" floor "$BIN/floor" -jobs 4 "$REF" || FAILED+=("floor/$r")
	step floor-serial "$r" floor "$BIN/floor" -jobs 1 "$REF" || FAILED+=("floor-serial/$r")

	if [ "$IMG2EXT4_EXT4" = 1 ]; then
		rm -f "$W/img2ext4.img"
		if step img2ext4 "$r" img2ext4 "$BIN/img2ext4" --progress none --tmpdir "$W" "$REF" "$W/img2ext4.img"; then
			size img2ext4 "$r" "$W/img2ext4.img"
		else FAILED+=("img2ext4/$r"); fi
	fi
	rm -rf "$W/img2ext4-dir"
	if step img2ext4-dir "$r" img2ext4 "$BIN/img2ext4" --progress none --tmpdir "$W" --format dir "$REF" "$W/img2ext4-dir"; then
		size img2ext4-dir "$r" "$W/img2ext4-dir"
	else FAILED+=("img2ext4-dir/$r"); fi
	rm -rf "$W/img2ext4-dir"
	rm -f "$W/img2ext4.tar"
	if step img2ext4-tar "$r" img2ext4 "$BIN/img2ext4" --progress none --tmpdir "$W" --format tar "$REF" "$W/img2ext4.tar"; then
		size img2ext4-tar "$r" "$W/img2ext4.tar"
	else FAILED+=("img2ext4-tar/$r"); fi
	rm -f "$W/img2ext4.tar"

	rm -f "$W/ggcr.img"
	if step ggcr "$r" ggcrext4 "$BIN/ggcrext4" "$REF" "$W/ggcr.img"; then
		size ggcr "$r" "$W/ggcr.img"
	else FAILED+=("ggcr/$r"); fi

	rm -rf "$W/skopeo"
	mkdir -p "$W/skopeo"
	if step skopeo "$r" skopeo-copy skopeo copy --quiet --src-tls-verify=false "docker://$REF" "oci:$W/skopeo/oci:bench" &&
		step skopeo "$r" umoci-unpack umoci unpack --image "$W/skopeo/oci:bench" "$W/skopeo/bundle" &&
		step skopeo "$r" mkfs.ext4 bash -c 'mkfs_sized "$1" "$2"' _ "$W/skopeo/bundle/rootfs" "$W/skopeo/mkfs.img" &&
		step skopeo "$r" resize2fs resize2fs -M "$W/skopeo/mkfs.img"; then
		size skopeo "$r" "$W/skopeo/mkfs.img"
		size skopeo-intermediate "$r" "$W/skopeo/oci"
		size skopeo-intermediate "$r" "$W/skopeo/bundle"
	else FAILED+=("skopeo/$r"); fi
	rm -rf "$W/skopeo/oci" "$W/skopeo/bundle"

	rm -rf "$W/skopeo-raw"
	mkdir -p "$W/skopeo-raw"
	if step skopeo-raw "$r" skopeo-copy skopeo copy --quiet --src-tls-verify=false "docker://$REF" "oci:$W/skopeo-raw/oci:bench" &&
		step skopeo-raw "$r" umoci-raw-unpack umoci raw unpack --image "$W/skopeo-raw/oci:bench" "$W/skopeo-raw/rootfs" &&
		step skopeo-raw "$r" mkfs.ext4 bash -c 'mkfs_sized "$1" "$2"' _ "$W/skopeo-raw/rootfs" "$W/skopeo-raw/mkfs.img" &&
		step skopeo-raw "$r" resize2fs resize2fs -M "$W/skopeo-raw/mkfs.img"; then
		size skopeo-raw "$r" "$W/skopeo-raw/mkfs.img"
	else FAILED+=("skopeo-raw/$r"); fi
	# Keep the last run's image for e2fsck, not the trees.
	rm -rf "$W/skopeo-raw/oci" "$W/skopeo-raw/rootfs"
done
echo "loadavg_end	$(cut -d' ' -f1-3 /proc/loadavg)" >>"$E/machine.tsv"

# e2fsck -fn on the ext4 outputs of the last run.
: >"$E/fsck.txt"
KVER=$(ls "$OUT/work/l5/usr/lib/modules" 2>/dev/null | head -1)
for f in "$W/img2ext4.img" "$W/ggcr.img" "$W/skopeo/mkfs.img" "$W/skopeo-raw/mkfs.img"; do
	[ -f "$f" ] || continue
	set +e
	out=$(e2fsck -fn "$f" 2>&1)
	rc=$?
	set -e
	{
		echo "## $(basename "$(dirname "$f")")/$(basename "$f"): exit $rc"
		echo "$out" | grep -vE '^(e2fsck [0-9]|Pass [1-5]:)' | sed '/^$/d'
		# Layer 6's whiteouts and opaque directories, read back with debugfs.
		for p in /usr/share/doc /usr/share/locale "/usr/lib/modules/$KVER/kernel/sound" /usr/bin/x86_64-linux-gnu-gcc-12; do
			if debugfs -R "stat $p" "$f" 2>&1 | grep -q 'not found'; then echo "whiteout $p: gone"; else echo "whiteout $p: STILL THERE"; fi
		done
		for d in /usr/share/man /etc/apt/apt.conf.d; do
			echo "opaque $d: $(debugfs -R "ls $d" "$f" 2>/dev/null | tr -s ' \n' '\n' | grep -vE '^([0-9]+|\([0-9]+\)|\.|\.\.)?$' | sort | tr '\n' ' ')"
		done
		echo
	} >>"$E/fsck.txt"
done

go run ./summarize -dir "$E" -image "$OUT/image-summary.json" >"$E/summary.md"
cat "$E/summary.md"
if [ ${#FAILED[@]} -gt 0 ]; then
	echo "e2e.sh: failed steps: ${FAILED[*]}" >&2
fi
