package ext4writer

import (
	"crypto/sha256"
	"fmt"
)

// Option configures a [Writer].
type Option func(*options) error

type options struct {
	journal     bool
	readOnly    bool
	legacy      bool
	label       string
	uuid        [16]byte
	uuidSet     bool
	hashSeed    [16]byte
	hashSeedSet bool
	seed        string
	inodeCount  uint32
	inodeRatio  int64
	reservedPct int
	size        int64 // fixed size, 0 = computed
	maxSize     int64
	freeSpace   int64 // bytes available to ordinary users in a computed image
	freePct     int   // percent of the content available to ordinary users
	freeSet     bool  // freeSpace and freePct replace the default headroom
	freeInodes  uint32
	mkfsTime    uint32
	align       int64 // a computed size is rounded up to a multiple of align
}

const (
	defaultMaxSize    = 1 << 40
	maxMaxSize        = 64 << 40 // larger would need meta_bg
	defaultInodeRatio = 16384
	defaultSeed       = "img2ext4"
)

// The space a computed image leaves to its users (see [WithFreeSpace]).
const (
	// DefaultFreeSpace is the least space, in bytes, that an image of
	// computed size leaves available to ordinary users unless
	// [WithFreeSpace] or [WithFreePercent] says otherwise: 64 MiB.
	DefaultFreeSpace = 64 << 20
	// DefaultFreePercent is the share of the content, in percent, that
	// an image of computed size leaves available when it is more than
	// [DefaultFreeSpace]: 10.
	DefaultFreePercent = 10
	// MinFreeSpace is the space an image of computed size always leaves
	// available on top of the kernel's reserve, so that even the
	// smallest image takes a small write: 1 MiB.
	MinFreeSpace = 1 << 20
)

func makeOptions(opts []Option) (*options, error) {
	o := &options{
		journal:    true,
		inodeRatio: defaultInodeRatio,
		seed:       defaultSeed,
	}
	for _, opt := range opts {
		if err := opt(o); err != nil {
			return nil, err
		}
	}
	if o.maxSize == 0 {
		o.maxSize = defaultMaxSize
		if o.size > 0 {
			o.maxSize = o.size
		}
	}
	if o.size > maxMaxSize {
		return nil, fmt.Errorf("ext4writer: size %d above the 64 TiB maximum", o.size)
	}
	if o.size > 0 && o.size > o.maxSize {
		return nil, fmt.Errorf("ext4writer: size %d exceeds maximum size %d", o.size, o.maxSize)
	}
	if o.legacy && o.maxSize > (1<<32-1)*blockSize {
		return nil, fmt.Errorf("ext4writer: maximum size %d too large without 64bit", o.maxSize)
	}
	if !o.uuidSet {
		h := sha256.Sum256([]byte("uuid\x00" + o.seed))
		copy(o.uuid[:], h[:16])
		o.uuid[6] = o.uuid[6]&0x0f | 0x40 // version 4 layout
		o.uuid[8] = o.uuid[8]&0x3f | 0x80
	}
	if !o.hashSeedSet {
		h := sha256.Sum256([]byte("hashseed\x00" + o.seed))
		if o.uuidSet {
			h = sha256.Sum256(append([]byte("hashseed-uuid\x00"), o.uuid[:]...))
		}
		copy(o.hashSeed[:], h[:16])
	}
	return o, nil
}

// WithoutJournal omits the JBD2 journal (no has_journal feature). The
// default is a journal sized like mke2fs 1.47 does.
func WithoutJournal() Option {
	return func(o *options) error { o.journal = false; return nil }
}

// WithReadOnly sets the read-only feature (RO_COMPAT_READONLY) so the
// kernel only mounts the image read-only. The default is off.
func WithReadOnly() Option {
	return func(o *options) error { o.readOnly = true; return nil }
}

// WithLegacy selects a feature set for old kernels and boot loaders:
// without metadata_csum and 64bit, with uninit_bg group descriptor
// checksums instead. The default is the mke2fs 1.47 ext4 feature set.
func WithLegacy() Option {
	return func(o *options) error { o.legacy = true; return nil }
}

// WithLabel sets the volume label (at most 16 bytes). The default is empty.
func WithLabel(label string) Option {
	return func(o *options) error {
		if len(label) > 16 {
			return fmt.Errorf("ext4writer: label %q longer than 16 bytes", label)
		}
		o.label = label
		return nil
	}
}

// WithUUID sets the filesystem UUID, which must not be all zeros. The
// default is derived from the seed (see [WithSeed]). A UUID given also
// decides the directory hash seed unless [WithHashSeed] sets it: the
// metadata checksums (seeded by the UUID) and the order of large
// directories' entries then depend on the UUID only, so that versions of
// an image written with the same UUID keep their unchanged metadata
// byte for byte.
func WithUUID(uuid [16]byte) Option {
	return func(o *options) error {
		if uuid == [16]byte{} {
			return fmt.Errorf("ext4writer: zero UUID")
		}
		o.uuid, o.uuidSet = uuid, true
		return nil
	}
}

// WithHashSeed sets the directory hash seed, which must not be all
// zeros. The default is derived from the UUID when [WithUUID] gives it,
// else from the seed (see [WithSeed]).
func WithHashSeed(seed [16]byte) Option {
	return func(o *options) error {
		if seed == [16]byte{} {
			return fmt.Errorf("ext4writer: zero hash seed")
		}
		o.hashSeed, o.hashSeedSet = seed, true
		return nil
	}
}

// WithSeed sets the string from which the UUID and hash seed are derived
// (by SHA-256) unless given explicitly. The default is "img2ext4".
func WithSeed(seed string) Option {
	return func(o *options) error { o.seed = seed; return nil }
}

// WithInodeCount fixes the number of inodes (rounded up to fill whole
// groups). The default derives it from the inode ratio.
func WithInodeCount(n uint32) Option {
	return func(o *options) error {
		if n == 0 {
			return fmt.Errorf("ext4writer: zero inode count")
		}
		o.inodeCount = n
		return nil
	}
}

// WithInodeRatio sets the bytes-per-inode ratio used to size the inode
// tables; the image always has at least as many inodes as it uses. The
// default is 16384, as mke2fs.
func WithInodeRatio(bytesPerInode int64) Option {
	return func(o *options) error {
		if bytesPerInode < 1024 || bytesPerInode > 1<<26 {
			return fmt.Errorf("ext4writer: inode ratio %d out of range [1024, 67108864]", bytesPerInode)
		}
		o.inodeRatio = bytesPerInode
		return nil
	}
}

// WithFreeInodes asks for at least n unused inodes in the image. The
// default is 0 (beyond what the inode ratio gives).
func WithFreeInodes(n uint32) Option {
	return func(o *options) error { o.freeInodes = n; return nil }
}

// WithReservedPercent sets the percentage of blocks reserved for root,
// 0 to 50 (mke2fs's -m). In an image of computed size they come on top
// of the free space asked for. The default is 0: mke2fs's 5 % protects
// multi-user hosts, not a virtual machine's root filesystem.
func WithReservedPercent(pct int) Option {
	return func(o *options) error {
		if pct < 0 || pct > 50 {
			return fmt.Errorf("ext4writer: reserved percentage %d out of range [0, 50]", pct)
		}
		o.reservedPct = pct
		return nil
	}
}

// WithSize fixes the image size in bytes (rounded down to 4 KiB blocks).
// When the content does not fit, the writer goes on taking entries
// without writing them, and Close fails with a *[SizeError] that tells
// the smallest size that would fit. The default computes the size from
// the content and the free space asked for (see [WithFreeSpace]).
func WithSize(n int64) Option {
	return func(o *options) error {
		if n < 64*blockSize {
			return fmt.Errorf("ext4writer: size %d too small", n)
		}
		o.size = n
		return nil
	}
}

// WithMaxSize sets the largest size the image may grow to, at most
// 64 TiB; the writer keeps room for the group descriptors (and their
// sparse_super backups) such a size needs, 64 bytes per 128 MiB. The
// default is 1 TiB, or the fixed size given by [WithSize].
func WithMaxSize(n int64) Option {
	return func(o *options) error {
		if n < 64*blockSize || n > maxMaxSize {
			return fmt.Errorf("ext4writer: maximum size %d out of range", n)
		}
		o.maxSize = n
		return nil
	}
}

// WithFreeSpace asks that an image of computed size leave at least n
// bytes available to ordinary users, as df shows them inside the mounted
// image: free blocks minus the blocks reserved for root
// ([WithReservedPercent]) and minus the kernel's own reserve
// (s_resv_clusters, the smaller of 2 % of the blocks and 16 MiB), which
// come on top. It adds to [WithFreePercent], and the image always leaves
// at least [MinFreeSpace], so WithFreeSpace(0) gives the smallest image
// that still takes a small write. The free space comes with one free
// inode per inode-ratio bytes. The default, when neither WithFreeSpace
// nor WithFreePercent is given, is the larger of [DefaultFreeSpace] and
// [DefaultFreePercent] % of the content. It is ignored with [WithSize].
func WithFreeSpace(n int64) Option {
	return func(o *options) error {
		if n < 0 {
			return fmt.Errorf("ext4writer: negative free space")
		}
		o.freeSpace, o.freeSet = n, true
		return nil
	}
}

// WithFreePercent asks that an image of computed size leave pct percent
// of its content available to ordinary users, on top of [WithFreeSpace]
// and counted the same way. The content is the blocks that files,
// directories, symbolic links, extent trees and attribute blocks take,
// not the inode tables, bitmaps and journal. pct is 0 to 10000. The
// default is described on [WithFreeSpace].
func WithFreePercent(pct int) Option {
	return func(o *options) error {
		if pct < 0 || pct > 10000 {
			return fmt.Errorf("ext4writer: free percentage %d out of range [0, 10000]", pct)
		}
		o.freePct, o.freeSet = pct, true
		return nil
	}
}

// WithAlign rounds a computed image size (no [WithSize]) up to a multiple of n bytes, a
// power of two of at least 4096: 2 MiB suits virtio-pmem devices, which need it. The extra
// blocks are free space. The default is 4096, no rounding.
func WithAlign(n int64) Option {
	return func(o *options) error {
		if n < blockSize || n&(n-1) != 0 {
			return fmt.Errorf("ext4writer: alignment %d is not a power of two of at least %d", n, blockSize)
		}
		o.align = n
		return nil
	}
}

// WithCreationTime sets the superblock creation time (Unix seconds). The
// default is 0, keeping output independent of the clock.
func WithCreationTime(sec uint32) Option {
	return func(o *options) error { o.mkfsTime = sec; return nil }
}
