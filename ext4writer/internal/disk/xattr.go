package disk

// XattrMagic starts the in-inode xattr area and external xattr blocks.
const XattrMagic = 0xEA020000

// XattrHeaderSize is the size of the external xattr block header.
const XattrHeaderSize = 32

// XattrEntrySize returns the size of an entry with an n-byte name.
func XattrEntrySize(n int) int { return (16 + n + 3) &^ 3 }

// XattrValueSize rounds a value size up to the 4-byte padding.
func XattrValueSize(n int) int { return (n + 3) &^ 3 }

// XattrHash computes the entry hash over name and value.
func XattrHash(name string, value []byte) uint32 {
	var h uint32
	for i := 0; i < len(name); i++ {
		h = h<<5 ^ h>>27 ^ uint32(name[i])
	}
	for i := 0; i < len(value); i += 4 {
		var w [4]byte
		copy(w[:], value[i:])
		h = h<<16 ^ h>>16 ^ le.Uint32(w[:])
	}
	return h
}

// PutXattrEntry writes an entry header and name at b.
func PutXattrEntry(b []byte, index uint8, name string, valueOff, valueSize int, hash uint32) {
	b[0] = uint8(len(name))
	b[1] = index
	le.PutUint16(b[2:], uint16(valueOff))
	le.PutUint32(b[4:], 0)
	le.PutUint32(b[8:], uint32(valueSize))
	le.PutUint32(b[12:], hash)
	copy(b[16:], name)
}

// SealXattrBlock writes the block header (refcount inodes share it),
// hash and checksum of an external xattr block located at physical block
// blk. hashes lists the entry hashes in order.
func SealXattrBlock(b []byte, blk uint64, refcount uint32, hashes []uint32, fsSeed uint32, csum bool) {
	le.PutUint32(b[0:], XattrMagic)
	le.PutUint32(b[4:], refcount)
	le.PutUint32(b[8:], 1) // blocks
	var h uint32
	for _, e := range hashes {
		if e == 0 {
			h = 0
			break
		}
		h = h<<16 ^ h>>16 ^ e
	}
	le.PutUint32(b[12:], h)
	le.PutUint32(b[16:], 0)
	if csum {
		var bn [8]byte
		le.PutUint64(bn[:], blk)
		c := Crc32c(fsSeed, bn[:])
		c = Crc32c(c, b[:BlockSize])
		le.PutUint32(b[16:], c)
	}
}
