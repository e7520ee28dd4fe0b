package disk

import "encoding/binary"

// JournalBlocks returns the journal size in blocks that mke2fs 1.47
// picks for a filesystem of n blocks, or 0 when it is too small.
func JournalBlocks(n uint64) uint64 {
	switch {
	case n < 2048:
		return 0
	case n < 32768:
		return 1024
	case n < 256*1024:
		return 4096
	case n < 512*1024:
		return 8192
	case n < 4096*1024:
		return 16384
	case n < 8192*1024:
		return 32768
	case n < 16384*1024:
		return 65536
	case n < 32768*1024:
		return 131072
	}
	return 262144
}

// PutJournalSuper writes a clean JBD2 v2 superblock for an internal
// journal of n blocks into b (one block).
func PutJournalSuper(b []byte, n uint32, uuid [16]byte, csum bool) {
	clear(b[:BlockSize])
	be := binary.BigEndian
	be.PutUint32(b[0x0:], 0xC03B3998)
	be.PutUint32(b[0x4:], 4) // superblock v2
	be.PutUint32(b[0xC:], BlockSize)
	be.PutUint32(b[0x10:], n)
	be.PutUint32(b[0x14:], 1) // first log block
	be.PutUint32(b[0x18:], 1) // sequence
	copy(b[0x30:0x40], uuid[:])
	be.PutUint32(b[0x40:], 1) // nr_users
	if csum {
		be.PutUint32(b[0x28:], 0x10) // INCOMPAT_CSUM_V3
		b[0x50] = 4                  // JBD2_CRC32C_CHKSUM
		be.PutUint32(b[0xFC:], Crc32c(^uint32(0), b[:1024]))
	}
}
