#!/bin/bash
# mkfs-size.sh DIR: the smallest image ext4writer makes of DIR (WithFreeSpace(0)) against the
# smallest mke2fs -t ext4 -b 4096 -I 256 -N <the same inodes> -d DIR that holds it, found by
# bisection to 2 %. Prints: ours MiB, mke2fs MiB, ratio, mke2fs blocks per group.
set -euo pipefail
dir=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$(dirname "$0")"
go build -o "$work/mkfscmp" ./mkfscmp
read -r ours inodes < <("$work/mkfscmp" "$dir" "$work/ours.img")
e2fsck -fn "$work/ours.img" >/dev/null
ours_mib=$(( (ours + (1<<20) - 1) >> 20 ))
fits() { rm -f "$work/m.img"; mke2fs -q -F -t ext4 -b 4096 -I 256 -N "$inodes" -d "$dir" "$work/m.img" "${1}M" >/dev/null 2>&1; }
# bracket: mke2fs is assumed not to fit in 80 % of ours (checked), stop at 2 % precision
lo=$(( ours_mib * 8 / 10 )) hi=$ours_mib
if fits "$lo"; then echo "mke2fs fits in $lo MiB, 80 % of ours ($ours_mib MiB)"; exit 0; fi
while ! fits "$hi"; do lo=$hi; hi=$(( hi * 11 / 10 + 1 )); done
while (( hi - lo > 1 && (hi - lo) * 50 > hi )); do
	mid=$(( (lo + hi) / 2 ))
	if fits "$mid"; then hi=$mid; else lo=$mid; fi
done
fits "$hi"
bpg=$(dumpe2fs -h "$work/m.img" 2>/dev/null | awk -F: '/^Blocks per group/ {gsub(/ /, "", $2); print $2}')
ourbpg=$(dumpe2fs -h "$work/ours.img" 2>/dev/null | awk -F: '/^Blocks per group/ {gsub(/ /, "", $2); print $2}')
echo "inodes $inodes: ours $ours_mib MiB (bpg $ourbpg), mke2fs $hi MiB (bpg $bpg), ratio $(awk "BEGIN {printf \"%.3f\", $ours_mib / $hi}")"
