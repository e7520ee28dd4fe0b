package disk

// Inode holds the fields of one on-disk inode.
type Inode struct {
	Mode                        uint16
	UID, GID                    uint32
	Size                        uint64
	Atime, Ctime, Mtime, Crtime [2]uint32 // seconds field, extra field
	Links                       uint16
	Blocks                      uint64 // in 512-byte sectors
	Flags                       uint32
	Block                       [60]byte
	FileACL                     uint64
	Xattr                       []byte // in-inode xattr area (from offset 160), may be nil
}

// InodeXattrSpace is the size of the in-inode extended attribute area.
const InodeXattrSpace = InodeSize - GoodOldInode - ExtraIsize

// Marshal encodes in into b (InodeSize bytes). When csum is set it stores
// the metadata_csum inode checksum computed with fsSeed.
func (in *Inode) Marshal(b []byte, ino uint32, fsSeed uint32, csum bool) {
	clear(b[:InodeSize])
	le.PutUint16(b[0x0:], in.Mode)
	le.PutUint16(b[0x2:], uint16(in.UID))
	le.PutUint32(b[0x4:], uint32(in.Size))
	le.PutUint32(b[0x8:], in.Atime[0])
	le.PutUint32(b[0xC:], in.Ctime[0])
	le.PutUint32(b[0x10:], in.Mtime[0])
	le.PutUint16(b[0x18:], uint16(in.GID))
	le.PutUint16(b[0x1A:], in.Links)
	le.PutUint32(b[0x1C:], uint32(in.Blocks))
	le.PutUint32(b[0x20:], in.Flags)
	copy(b[0x28:0x64], in.Block[:])
	le.PutUint32(b[0x68:], uint32(in.FileACL))
	le.PutUint32(b[0x6C:], uint32(in.Size>>32))
	le.PutUint16(b[0x74:], uint16(in.Blocks>>32))
	le.PutUint16(b[0x76:], uint16(in.FileACL>>32))
	le.PutUint16(b[0x78:], uint16(in.UID>>16))
	le.PutUint16(b[0x7A:], uint16(in.GID>>16))
	le.PutUint16(b[0x80:], ExtraIsize)
	le.PutUint32(b[0x84:], in.Ctime[1])
	le.PutUint32(b[0x88:], in.Mtime[1])
	le.PutUint32(b[0x8C:], in.Atime[1])
	le.PutUint32(b[0x90:], in.Crtime[0])
	le.PutUint32(b[0x94:], in.Crtime[1])
	if in.Xattr != nil {
		copy(b[GoodOldInode+ExtraIsize:InodeSize], in.Xattr)
	}
	if csum {
		c := InodeSeed(fsSeed, ino, 0)
		c = Crc32c(c, b[:InodeSize])
		le.PutUint16(b[0x7C:], uint16(c))
		le.PutUint16(b[0x82:], uint16(c>>16))
	}
}

// Extent is one leaf extent: Len blocks at logical block Logical mapped to
// physical block Start.
type Extent struct {
	Logical uint32
	Len     uint16
	Start   uint64
}

// MaxExtentLen is the longest initialised extent.
const MaxExtentLen = 32768

// ExtentsPerBlock is the number of entries in one extent tree block.
const ExtentsPerBlock = (BlockSize - 12) / 12

// PutExtentHeader writes an extent header.
func PutExtentHeader(b []byte, entries, max, depth uint16) {
	le.PutUint16(b[0:], 0xF30A)
	le.PutUint16(b[2:], entries)
	le.PutUint16(b[4:], max)
	le.PutUint16(b[6:], depth)
	le.PutUint32(b[8:], 0)
}

// PutExtentLeaf writes a leaf entry.
func PutExtentLeaf(b []byte, e Extent) {
	le.PutUint32(b[0:], e.Logical)
	le.PutUint16(b[4:], e.Len)
	le.PutUint16(b[6:], uint16(e.Start>>32))
	le.PutUint32(b[8:], uint32(e.Start))
}

// PutExtentIndex writes an index entry.
func PutExtentIndex(b []byte, logical uint32, leaf uint64) {
	le.PutUint32(b[0:], logical)
	le.PutUint32(b[4:], uint32(leaf))
	le.PutUint16(b[8:], uint16(leaf>>32))
	le.PutUint16(b[10:], 0)
}

// SealExtentBlock stores the extent block checksum tail.
func SealExtentBlock(b []byte, inodeSeed uint32) {
	off := 12 + 12*ExtentsPerBlock
	le.PutUint32(b[off:], Crc32c(inodeSeed, b[:off]))
}

// EncodeDev encodes a device number into i_block the way the kernel does.
func EncodeDev(b []byte, major, minor uint32) {
	if major < 256 && minor < 256 {
		le.PutUint32(b[0:], major<<8|minor)
		le.PutUint32(b[4:], 0)
		return
	}
	le.PutUint32(b[0:], 0)
	le.PutUint32(b[4:], minor&0xff|major<<8|(minor&^0xff)<<12)
}
