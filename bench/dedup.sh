#!/bin/bash
# dedup.sh: how many 2 MiB chunks of an ext4 image change when its image gains a top layer.
#
#   [SHAPE=bench|plain] [UUID=HEX] ./dedup.sh [REV...]
#
# SHAPE=bench (the default): version 1 is the image of build-image.sh (out/oci, run it
# first); version 2 is the same six layers plus a seventh that adds a few files (a 6 MiB
# program, its configuration, an entry script) and removes one file of layer 2.
# SHAPE=plain: the same without layer 6 (no whiteouts below the top layer), so version 1 is
# layers 1-5 and version 2 layers 1-5 and 7. Both versions are converted by img2ext4 with its
# defaults, built from each REV given (a commit of this repository; "." or nothing: the
# working tree), checked with e2fsck -fn, and compared chunk by chunk with ./chunkdiff. With
# UUID set, both get that --uuid (otherwise each its own, derived from its manifest digest).
# Results go to out/dedup/REV-SHAPE[-uuid]/ (images deleted after the comparison unless
# KEEP=1) and out/dedup/summary.tsv.
set -euo pipefail
cd "$(dirname "$0")"
BENCH=$PWD
OUT=$BENCH/out
WORK=$OUT/work
D=$OUT/dedup
[ -e "$OUT/oci/index.json" ] && [ -e "$WORK/l6.whiteouts" ] || { echo "dedup.sh: run ./build-image.sh first" >&2; exit 1; }
command -v e2fsck >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq e2fsprogs; }
mkdir -p "$D"

# Layer 7: a small application on top, and one file of layer 2 removed.
L7=$WORK/l7
if [ ! -e "$WORK/l7.whiteouts" ]; then
	rm -rf "$L7"; mkdir -p "$L7"
	# parents DIR: DIR and its parents in layer 7 with the metadata of the lower layers' copy.
	parents() {
		local p="" c src
		IFS=/ read -ra comps <<<"$1"
		for c in "${comps[@]}"; do
			p=${p:+$p/}$c
			[ -d "$L7/$p" ] && continue
			mkdir "$L7/$p"
			src=""
			for l in "$WORK/l6" "$WORK/l5" "$WORK/l4" "$WORK/l3" "$WORK/l2" "$WORK/base"; do
				if [ -d "$l/$p" ] && [ ! -L "$l/$p" ]; then src=$l/$p; break; fi
			done
			if [ -n "$src" ]; then chmod --reference="$src" "$L7/$p"; chown --reference="$src" "$L7/$p"; fi
		done
	}
	parents opt/app/bin; parents opt/app/etc; parents usr/local/bin; parents etc; parents usr/bin
	# a program: 6 MiB of deterministic, incompressible bytes
	head -c $((6 << 20)) /dev/zero | openssl enc -aes-128-ctr -nosalt -K 000102030405060708090a0b0c0d0e0f -iv 0 >"$L7/opt/app/bin/app"
	chmod 755 "$L7/opt/app/bin/app"
	printf 'listen: 0.0.0.0:8080\nworkers: 4\nlog: info\n' >"$L7/opt/app/etc/app.yaml"
	printf '#!/bin/sh\nexec /opt/app/bin/app --config /opt/app/etc/app.yaml "$@"\n' >"$L7/usr/local/bin/app-entry"
	chmod 755 "$L7/usr/local/bin/app-entry"
	echo 'APP_VERSION=2' >"$L7/etc/app-release"
	# fixed times, the directories' last
	find "$L7" -mindepth 1 ! -type d -exec touch -h -d '2026-11-30 12:00:00 UTC' {} +
	(cd "$L7" && find . -mindepth 1 -depth -type d -printf '%P\n') | while read -r d; do
		t=""
		for l in "$WORK/l6" "$WORK/l5" "$WORK/l4" "$WORK/l3" "$WORK/l2" "$WORK/base"; do
			if [ -d "$l/$d" ] && [ ! -L "$l/$d" ]; then t=$l/$d; break; fi
		done
		if [ -n "$t" ]; then touch -r "$t" "$L7/$d"; else touch -d '2026-11-30 12:00:00 UTC' "$L7/$d"; fi
	done
	echo 'wh usr/bin/x86_64-linux-gnu-cpp-12' >"$WORK/l7.whiteouts"
fi
LOWER=(-layer "$WORK/base" -layer "$WORK/l2" -layer "$WORK/l3" -layer "$WORK/l4" -layer "$WORK/l5")
TOP=(-layer "$L7,whiteouts=$WORK/l7.whiteouts")
# mk DIR LAYER-FLAGS...: an OCI layout of those layers, unless already there.
mk() {
	local dir=$1; shift
	[ -e "$dir/index.json" ] || go run ./mkimage -out "$dir" -tag bench -blobs "$dir.blobs" -summary "$dir.json" "$@"
	rm -rf "$dir.blobs"
}
case "${SHAPE:-bench}" in
bench) # version 1 is build-image.sh's image, with layer 6's whiteouts
	mk "$D/oci-v2" "${LOWER[@]}" -layer "$WORK/l6,whiteouts=$WORK/l6.whiteouts" "${TOP[@]}"
	V1=$OUT/oci; V1SUM=$OUT/image-summary.json; V2=$D/oci-v2; N=6 ;;
plain) # layers 1-5 only: no whiteouts below the top layer
	mk "$D/oci-v1-plain" "${LOWER[@]}"
	mk "$D/oci-v2-plain" "${LOWER[@]}" "${TOP[@]}"
	V1=$D/oci-v1-plain; V1SUM=$D/oci-v1-plain.json; V2=$D/oci-v2-plain; N=5 ;;
*) echo "dedup.sh: SHAPE is bench or plain" >&2; exit 2 ;;
esac
# The lower layers of version 2 must be version 1's, byte for byte.
cmp <(jq -r ".layers[0:$N][].digest" "$V1SUM") <(jq -r ".layers[0:$N][].digest" "$V2.json") ||
	{ echo "dedup.sh: the lower layers of version 2 differ from version 1's: rebuild both (rm -r out/dedup)" >&2; exit 1; }

go build -o "$D/chunkdiff" ./chunkdiff
[ -e "$D/summary.tsv" ] || printf 'rev\tcommit\tv1_bytes\tv2_bytes\tv2_chunks\tsame_offset\tnew_at_offset\tzero\tknown_anywhere\tupload\tfsck_v1\tfsck_v2\tload\n' >"$D/summary.tsv"
[ $# -gt 0 ] || set -- .
for rev in "$@"; do
	name=${rev//\//_}; [ "$rev" = . ] && name=worktree
	name=$name-${SHAPE:-bench}
	uuidarg=()
	if [ -n "${UUID:-}" ]; then name=$name-uuid; uuidarg=(--uuid "$UUID"); fi
	R=$D/$name; rm -rf "$R"; mkdir -p "$R"
	if [ "$rev" = . ]; then
		commit="$(git -C .. rev-parse --short HEAD)+worktree"
		(cd .. && go build -o "$R/img2ext4" ./cmd/img2ext4)
	else
		commit=$(git -C .. rev-parse --short "$rev")
		mkdir -p "$R/src"
		git -C .. archive "$rev" | tar -x -C "$R/src"
		(cd "$R/src" && go build -o "$R/img2ext4" ./cmd/img2ext4)
		rm -rf "$R/src"
	fi
	"$R/img2ext4" --progress none --tmpdir "$R" "${uuidarg[@]}" "oci:$V1:bench" "$R/v1.img"
	"$R/img2ext4" --progress none --tmpdir "$R" "${uuidarg[@]}" "oci:$V2:bench" "$R/v2.img"
	f1=clean; e2fsck -fn "$R/v1.img" >"$R/fsck-v1.txt" 2>&1 || f1="errors($?)"
	f2=clean; e2fsck -fn "$R/v2.img" >"$R/fsck-v2.txt" 2>&1 || f2="errors($?)"
	"$D/chunkdiff" "$R/v1.img" "$R/v2.img" | tee "$R/chunkdiff.txt"
	"$D/chunkdiff" -json "$R/v1.img" "$R/v2.img" >"$R/chunkdiff.json"
	echo "e2fsck -fn: v1 $f1, v2 $f2"
	tail -n 2 "$R/fsck-v1.txt" "$R/fsck-v2.txt"
	j() { jq -r "$1" "$R/chunkdiff.json"; }
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$rev ${SHAPE:-bench}${UUID:+ --uuid}" "$commit" "$(j .old_bytes)" "$(j .new_bytes)" \
		"$(j .new_chunks)" "$(j .same_offset)" "$(j .new_at_offset)" "$(j .zero)" "$(j .known_anywhere)" "$(j .upload)" \
		"$f1" "$f2" "$(cut -d' ' -f1-3 /proc/loadavg)" >>"$D/summary.tsv"
	[ "${KEEP:-0}" = 1 ] || rm -f "$R/v1.img" "$R/v2.img"
done
column -t -s $'\t' "$D/summary.tsv"
