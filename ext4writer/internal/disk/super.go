package disk

// Super holds the superblock fields ext4writer sets.
type Super struct {
	InodesCount      uint32
	BlocksCount      uint64
	RBlocksCount     uint64
	FreeBlocksCount  uint64
	FreeInodesCount  uint32
	InodesPerGroup   uint32
	BlocksPerGroup   uint32 // BlocksPerGroup when 0
	FeatureCompat    uint32
	FeatureIncompat  uint32
	FeatureRoCompat  uint32
	UUID             [16]byte
	Label            [16]byte
	HashSeed         [16]byte
	DescSize         uint16
	JnlBlocks        [17]uint32
	HasJournal       bool
	Flags            uint32
	LogGroupsPerFlex uint8
	MetadataCsum     bool
	DefaultMountOpts uint32
	MkfsTime         uint32
}

// Marshal encodes s into b (1024 bytes) for the copy kept in group.
func (s *Super) Marshal(b []byte, group uint32) {
	clear(b[:SuperSize])
	le.PutUint32(b[0x0:], s.InodesCount)
	le.PutUint32(b[0x4:], uint32(s.BlocksCount))
	le.PutUint32(b[0x8:], uint32(s.RBlocksCount))
	le.PutUint32(b[0xC:], uint32(s.FreeBlocksCount))
	le.PutUint32(b[0x10:], s.FreeInodesCount)
	le.PutUint32(b[0x14:], 0) // first data block
	le.PutUint32(b[0x18:], LogBlockSize)
	le.PutUint32(b[0x1C:], LogBlockSize)
	bpg := s.BlocksPerGroup
	if bpg == 0 {
		bpg = BlocksPerGroup
	}
	le.PutUint32(b[0x20:], bpg)
	le.PutUint32(b[0x24:], bpg)
	le.PutUint32(b[0x28:], s.InodesPerGroup)
	le.PutUint16(b[0x36:], 0xFFFF) // max mount count
	le.PutUint16(b[0x38:], 0xEF53)
	le.PutUint16(b[0x3A:], 1) // clean
	le.PutUint16(b[0x3C:], 1) // errors=continue
	le.PutUint32(b[0x4C:], 1) // dynamic rev
	le.PutUint32(b[0x54:], FirstIno)
	le.PutUint16(b[0x58:], InodeSize)
	le.PutUint16(b[0x5A:], uint16(group))
	le.PutUint32(b[0x5C:], s.FeatureCompat)
	le.PutUint32(b[0x60:], s.FeatureIncompat)
	le.PutUint32(b[0x64:], s.FeatureRoCompat)
	copy(b[0x68:0x78], s.UUID[:])
	copy(b[0x78:0x88], s.Label[:])
	if s.HasJournal {
		le.PutUint32(b[0xE0:], JournalIno)
	}
	copy(b[0xEC:0xFC], s.HashSeed[:])
	b[0xFC] = 1 // half_md4
	if s.HasJournal {
		b[0xFD] = 1 // EXT3_JNL_BACKUP_BLOCKS
	}
	le.PutUint16(b[0xFE:], s.DescSize)
	le.PutUint32(b[0x100:], s.DefaultMountOpts)
	le.PutUint32(b[0x108:], s.MkfsTime)
	if s.HasJournal {
		for i, v := range s.JnlBlocks {
			le.PutUint32(b[0x10C+4*i:], v)
		}
	}
	le.PutUint32(b[0x150:], uint32(s.BlocksCount>>32))
	le.PutUint32(b[0x154:], uint32(s.RBlocksCount>>32))
	le.PutUint32(b[0x158:], uint32(s.FreeBlocksCount>>32))
	le.PutUint16(b[0x15C:], ExtraIsize)
	le.PutUint16(b[0x15E:], ExtraIsize)
	le.PutUint32(b[0x160:], s.Flags)
	b[0x174] = s.LogGroupsPerFlex
	if s.MetadataCsum {
		b[0x175] = 1 // crc32c
		le.PutUint32(b[0x3FC:], Crc32c(^uint32(0), b[:0x3FC]))
	}
}

// FsSeed returns the metadata_csum seed derived from the UUID.
func (s *Super) FsSeed() uint32 { return Crc32c(^uint32(0), s.UUID[:]) }

// GroupDesc holds one group descriptor.
type GroupDesc struct {
	BlockBitmap, InodeBitmap, InodeTable uint64
	FreeBlocks, FreeInodes, UsedDirs     uint32
	Flags                                uint16
	ItableUnused                         uint32
	BlockBitmapCsum, InodeBitmapCsum     uint32
}

// Marshal encodes g into b (size bytes: 32 or 64). With csum it stores
// the metadata_csum descriptor checksum; with gdtCsum the crc16 variant.
func (g *GroupDesc) Marshal(b []byte, size int, group uint32, fsSeed uint32, csum, gdtCsum bool, uuid []byte) {
	clear(b[:size])
	le.PutUint32(b[0x0:], uint32(g.BlockBitmap))
	le.PutUint32(b[0x4:], uint32(g.InodeBitmap))
	le.PutUint32(b[0x8:], uint32(g.InodeTable))
	le.PutUint16(b[0xC:], uint16(g.FreeBlocks))
	le.PutUint16(b[0xE:], uint16(g.FreeInodes))
	le.PutUint16(b[0x10:], uint16(g.UsedDirs))
	le.PutUint16(b[0x12:], g.Flags)
	le.PutUint16(b[0x1C:], uint16(g.ItableUnused))
	if csum {
		le.PutUint16(b[0x18:], uint16(g.BlockBitmapCsum))
		le.PutUint16(b[0x1A:], uint16(g.InodeBitmapCsum))
	}
	if size >= 64 {
		le.PutUint32(b[0x20:], uint32(g.BlockBitmap>>32))
		le.PutUint32(b[0x24:], uint32(g.InodeBitmap>>32))
		le.PutUint32(b[0x28:], uint32(g.InodeTable>>32))
		le.PutUint16(b[0x2C:], uint16(g.FreeBlocks>>16))
		le.PutUint16(b[0x2E:], uint16(g.FreeInodes>>16))
		le.PutUint16(b[0x30:], uint16(g.UsedDirs>>16))
		le.PutUint16(b[0x32:], uint16(g.ItableUnused>>16))
		if csum {
			le.PutUint16(b[0x38:], uint16(g.BlockBitmapCsum>>16))
			le.PutUint16(b[0x3A:], uint16(g.InodeBitmapCsum>>16))
		}
	}
	switch {
	case csum:
		c := Crc32cU32(fsSeed, group)
		c = Crc32c(c, b[:size])
		le.PutUint16(b[0x1E:], uint16(c))
	case gdtCsum:
		c := Crc16(0xFFFF, uuid)
		var gb [4]byte
		le.PutUint32(gb[:], group)
		c = Crc16(c, gb[:])
		c = Crc16(c, b[:0x1E])
		if size > 0x20 {
			c = Crc16(c, b[0x20:size])
		}
		le.PutUint16(b[0x1E:], c)
	}
}
