// Package disk encodes the ext4 on-disk structures that ext4writer emits:
// the superblock, group descriptors, inodes, extent nodes, directory
// entries, extended attribute entries and the JBD2 journal superblock,
// together with the checksums and hashes they carry.
//
// All multi-byte ext4 fields are little-endian; the journal superblock is
// big-endian. Encoders write into caller-provided buffers.
package disk

import (
	"encoding/binary"
	"hash/crc32"
)

// Geometry constants used by ext4writer.
const (
	BlockSize      = 4096
	LogBlockSize   = 2 // log2(BlockSize) - 10
	InodeSize      = 256
	GoodOldInode   = 128
	ExtraIsize     = 32
	BlocksPerGroup = 8 * BlockSize
	MaxInodesPerGr = 8 * BlockSize
	InodesPerBlock = BlockSize / InodeSize
	FirstIno       = 11
	RootIno        = 2
	JournalIno     = 8
	SuperOffset    = 1024
	SuperSize      = 1024
)

// Feature bits.
const (
	CompatHasJournal = 0x4
	CompatExtAttr    = 0x8
	CompatDirIndex   = 0x20

	IncompatFiletype = 0x2
	IncompatExtents  = 0x40
	Incompat64bit    = 0x80
	IncompatFlexBG   = 0x200
	IncompatLargeDir = 0x4000

	RoCompatSparseSuper  = 0x1
	RoCompatLargeFile    = 0x2
	RoCompatHugeFile     = 0x8
	RoCompatGdtCsum      = 0x10
	RoCompatDirNlink     = 0x20
	RoCompatExtraIsize   = 0x40
	RoCompatMetadataCsum = 0x400
	RoCompatReadonly     = 0x1000
)

// Inode flags.
const (
	FlagIndex   = 0x1000
	FlagExtents = 0x80000
)

// Group descriptor flags.
const (
	BGInodeUninit = 0x1
	BGBlockUninit = 0x2
	BGInodeZeroed = 0x4
)

// Mode type bits.
const (
	SIFMT   = 0xF000
	SIFSOCK = 0xC000
	SIFLNK  = 0xA000
	SIFREG  = 0x8000
	SIFBLK  = 0x6000
	SIFDIR  = 0x4000
	SIFCHR  = 0x2000
	SIFIFO  = 0x1000
)

// Directory entry file types.
const (
	FtUnknown = 0
	FtReg     = 1
	FtDir     = 2
	FtChr     = 3
	FtBlk     = 4
	FtFifo    = 5
	FtSock    = 6
	FtSymlink = 7
)

// FileType maps an i_mode to the directory entry file type.
func FileType(mode uint16) uint8 {
	switch mode & SIFMT {
	case SIFREG:
		return FtReg
	case SIFDIR:
		return FtDir
	case SIFCHR:
		return FtChr
	case SIFBLK:
		return FtBlk
	case SIFIFO:
		return FtFifo
	case SIFSOCK:
		return FtSock
	case SIFLNK:
		return FtSymlink
	}
	return FtUnknown
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Crc32c is the kernel's raw crc32c_le: no pre- or post-inversion beyond
// what seed supplies.
func Crc32c(seed uint32, p []byte) uint32 {
	return ^crc32.Update(^seed, castagnoli, p)
}

// Crc32cU32 chains a little-endian uint32 into a raw crc32c (bytewise,
// which avoids a heap copy for such a short input).
func Crc32cU32(seed, v uint32) uint32 {
	crc := seed
	for range 4 {
		crc = castagnoli[byte(crc)^byte(v)] ^ crc>>8
		v >>= 8
	}
	return crc
}

// InodeSeed returns the per-inode checksum seed.
func InodeSeed(fsSeed, ino, gen uint32) uint32 {
	return Crc32cU32(Crc32cU32(fsSeed, ino), gen)
}

// Crc16 is the CRC16 (poly 0x8005, reflected) used by uninit_bg group
// descriptor checksums.
func Crc16(crc uint16, p []byte) uint16 {
	for _, b := range p {
		crc ^= uint16(b)
		for i := 0; i < 8; i++ {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0xA001
			} else {
				crc >>= 1
			}
		}
	}
	return crc
}

// EncodeTime converts seconds and nanoseconds since the Unix epoch into
// the 32-bit seconds field and the extra field (2 epoch bits, 30 bits of
// nanoseconds). Out-of-range seconds are clamped to what ext4 can store.
func EncodeTime(sec int64, nsec int64) (lo, extra uint32) {
	const minSec = -1 << 31
	const maxSec = 1<<31 - 1 + 3<<32
	if sec < minSec {
		sec, nsec = minSec, 0
	}
	if sec > maxSec {
		sec, nsec = maxSec, 999999999
	}
	epoch := uint32((sec-int64(int32(sec)))>>32) & 3
	return uint32(int32(sec)), epoch | uint32(nsec)<<2
}

// le is shorthand for little-endian encoding.
var le = binary.LittleEndian
