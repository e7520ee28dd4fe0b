#!/bin/bash
# build-shapes.sh: the four image shapes of issue 11 as OCI layouts in out/shapes/NAME
# (tag "bench"), from the trees build-image.sh left in out/work (run it first):
#
#   debian-gzip  the 6 layers of build-image.sh, gzip (the same image as out/oci)
#   debian-zstd  the same trees, zstd (klauspost, default level)
#   single       one large layer: the kernel tree of layer 5 (~400 MiB, ~4,900 entries), gzip
#   edge         3 generated gzip layers: a 5 GiB file of zeros stored dense (4 KiB of
#                random bytes every 64 MiB), 300 MiB of random bytes, a directory of 60,000
#                empty files
#
# Summaries in out/shapes/NAME.json. Needs only Go; no root.
set -euo pipefail
cd "$(dirname "$0")"
OUT=$PWD/out
WORK=$OUT/work
S=$OUT/shapes
[ -e "$WORK/base/.done" ] && [ -d "$WORK/l6" ] || { echo "build-shapes.sh: no out/work trees; run ./build-image.sh first" >&2; exit 1; }
mkdir -p "$S" "$OUT/bin"
go build -o "$OUT/bin/" ./mkimage
deb=(-layer "$WORK/base" -layer "$WORK/l2" -layer "$WORK/l3" -layer "$WORK/l4" -layer "$WORK/l5" -layer "$WORK/l6,whiteouts=$WORK/l6.whiteouts")
only=${*:-debian-gzip debian-zstd single edge}
for shape in $only; do
	case $shape in
	debian-gzip) args=(-compression gzip "${deb[@]}") ;;
	debian-zstd) args=(-compression zstd "${deb[@]}") ;;
	single) args=(-compression gzip -layer "$WORK/l5") ;;
	edge) args=(-compression gzip -layer gen:zeros=5G -layer gen:random=300M -layer gen:dir=60000) ;;
	*) echo "build-shapes.sh: unknown shape $shape" >&2; exit 2 ;;
	esac
	"$OUT/bin/mkimage" -out "$S/$shape" -blobs "$S/$shape.blobs" -tag bench -summary "$S/$shape.json" "${args[@]}"
done
