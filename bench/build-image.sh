#!/bin/bash
# build-image.sh: build the benchmark image, about 1 GiB uncompressed in 6 gzip layers of
# real Debian bookworm content, as an OCI layout in bench/out/oci (tag "bench").
#
#   layer 1  debootstrap --variant=minbase bookworm
#   layer 2  C toolchain: gcc-12 cpp-12 libgcc-12-dev libstdc++-12-dev
#   layer 3  LLVM: libllvm15 libclang-cpp15 llvm-15
#   layer 4  runtimes: libpython3.11-stdlib python3-numpy perl-modules-5.36 libicu72
#   layer 5  the kernel that linux-image-amd64 depends on (modules under /usr/lib/modules)
#   layer 6  whiteouts of lower files and directories, two opaque directories, new files
#
# Needs root, apt (the mirror in /etc/apt/sources.list*), debootstrap and Go. Downloads and
# the debootstrap tree are cached under bench/out/work; delete it to start over.
set -euo pipefail
cd "$(dirname "$0")"
BENCH=$PWD
OUT=$BENCH/out
WORK=$OUT/work
mkdir -p "$WORK/debs"

need() { command -v "$1" >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2"; }; }
need debootstrap debootstrap

# The mirror apt already uses (first URIs:/deb line that serves bookworm).
mirror() {
	local m
	m=$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -1 || true)
	[ -n "$m" ] || m=$(grep -hE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | grep -v security | awk '{print $2}' | head -1 || true)
	[ -n "$m" ] || { echo "no apt mirror found in /etc/apt/sources.list*" >&2; exit 1; }
	echo "$m"
}

if [ ! -e "$WORK/base/.done" ]; then
	rm -rf "$WORK/base"
	debootstrap --variant=minbase bookworm "$WORK/base" "$(mirror)"
	# debootstrap leaves its apt lists and caches; an image build would drop them too.
	rm -rf "$WORK/base/var/lib/apt/lists/"* "$WORK/base/var/cache/apt/"*.bin
	touch "$WORK/base/.done"
fi

KERNEL=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/{print $2; exit}')
GROUP2="gcc-12 cpp-12 libgcc-12-dev libstdc++-12-dev"
GROUP3="libllvm15 libclang-cpp15 llvm-15"
GROUP4="libpython3.11-stdlib python3-numpy perl-modules-5.36 libicu72"
GROUP5="$KERNEL"

(cd "$WORK/debs" && for p in $GROUP2 $GROUP3 $GROUP4 $GROUP5; do
	ls "${p}"_*.deb >/dev/null 2>&1 || apt-get download "$p"
done)

# unpack DIR PKG...: the packages' file trees over the merged-usr symlinks of the base
# (kept with --keep-directory-symlink, as dpkg would), then the symlinks are dropped again:
# they belong to layer 1.
unpack() {
	local dir=$1; shift
	rm -rf "$dir"; mkdir -p "$dir"
	local links=()
	for l in "$WORK/base"/*; do
		if [ -L "$l" ]; then
			links+=("$(basename "$l")")
			cp -P "$l" "$dir/"
			# --keep-directory-symlink keeps only links that resolve to a directory.
			mkdir -p "$dir/$(readlink "$l")"
		fi
	done
	for p in "$@"; do
		dpkg-deb --fsys-tarfile "$WORK/debs/${p}"_*.deb | tar -x --keep-directory-symlink --same-owner -p -C "$dir"
	done
	for l in "${links[@]}"; do
		rmdir --ignore-fail-on-non-empty "$dir/$(readlink "$dir/$l")"
		rm "$dir/$l"
	done
}
unpack "$WORK/l2" $GROUP2
unpack "$WORK/l3" $GROUP3
unpack "$WORK/l4" $GROUP4
unpack "$WORK/l5" $GROUP5

# Layer 6: whiteouts and opaque directories over files of layers 1-5, plus new files.
L6=$WORK/l6
rm -rf "$L6"; mkdir -p "$L6"
# parents DIR: create DIR and its parents in layer 6 with the owner, mode and time of the
# topmost lower layer that has them.
parents() {
	local p="" c src
	IFS=/ read -ra comps <<<"$1"
	for c in "${comps[@]}"; do
		p=${p:+$p/}$c
		[ -d "$L6/$p" ] && continue
		src=""
		for l in "$WORK/l5" "$WORK/l4" "$WORK/l3" "$WORK/l2" "$WORK/base"; do
			if [ -d "$l/$p" ] && [ ! -L "$l/$p" ]; then src=$l/$p; break; fi
		done
		mkdir "$L6/$p"
		if [ -n "$src" ]; then chmod --reference="$src" "$L6/$p"; chown --reference="$src" "$L6/$p"; fi
	done
}
MODS=usr/lib/modules/${KERNEL#linux-image-}
WH=$WORK/l6.whiteouts
cat >"$WH" <<WHEOF
# whole directories spread over several lower layers
wh usr/share/doc
wh usr/share/locale
# a subtree of the kernel layer
wh $MODS/kernel/sound
wh $MODS/kernel/drivers/gpu
# single files of layers 2 and 3
wh usr/lib/x86_64-linux-gnu/libclang-cpp.so.15
wh usr/bin/x86_64-linux-gnu-gcc-12
# opaque directories with new content
opq usr/share/man
opq etc/apt/apt.conf.d
WHEOF
for d in usr/share "$MODS/kernel/drivers" usr/lib/x86_64-linux-gnu usr/bin usr/share/man etc/apt/apt.conf.d etc; do parents "$d"; done
echo 'bench image: the man pages were removed' >"$L6/usr/share/man/README"
printf 'APT::Install-Recommends "false";\n' >"$L6/etc/apt/apt.conf.d/99norecommends"
echo bench >"$L6/etc/hostname"
cp -a "$WORK/base/etc/passwd" "$L6/etc/passwd" && echo 'bench:x:1000:1000::/home/bench:/bin/bash' >>"$L6/etc/passwd"
# Fix the times of the directories last (writing files into them changed them).
(cd "$L6" && find . -mindepth 1 -depth -type d -printf '%P\n') | while read -r d; do
	for l in "$WORK/l5" "$WORK/l4" "$WORK/l3" "$WORK/l2" "$WORK/base"; do
		if [ -d "$l/$d" ] && [ ! -L "$l/$d" ]; then touch -r "$l/$d" "$L6/$d"; break; fi
	done
done

cd "$BENCH"
go run ./mkimage -out "$OUT/oci" -tag bench -blobs "$WORK/blobs" -summary "$OUT/image-summary.json" \
	-layer "$WORK/base" -layer "$WORK/l2" -layer "$WORK/l3" -layer "$WORK/l4" -layer "$WORK/l5" \
	-layer "$L6,whiteouts=$WH"
echo "wrote $OUT/oci (tag bench); summary in $OUT/image-summary.json"
