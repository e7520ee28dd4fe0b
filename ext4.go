package img2ext4

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/img2ext4/img2ext4/ext4writer"
	"golang.org/x/sys/unix"
)

// DefaultAlign is the size an ext4 image is rounded up to unless told otherwise: 2 MiB,
// which virtio-pmem devices require.
const DefaultAlign = 2 << 20

// Ext4Options shapes the ext4 image [Convert] writes with [FormatExt4].
type Ext4Options struct {
	// Size fixes the image size in bytes; the content must fit, and when it does not the
	// error says the size that would. The default (0) computes the size: the content, its
	// journal and metadata, the free space asked for and the reserves below, rounded up
	// to Align.
	Size int64
	// FreeBytes and FreePercent ask for space available to ordinary users (what df shows
	// inside the mounted image) in an image of computed size: bytes, or a percentage of
	// the content; both add up. The blocks reserved for root (ReservedPercent) and the
	// kernel's own reserve (the smaller of 2 % of the blocks and 16 MiB) come on top, and
	// every image leaves at least 1 MiB available, so even the smallest takes a small
	// write. The default, unless FreeSet, is the larger of 64 MiB and 10 % of the content
	// (see [ext4writer.WithFreeSpace]).
	FreeBytes   int64
	FreePercent int
	// FreeSet makes FreeBytes and FreePercent the whole request even when both are zero:
	// the smallest image that still takes a small write (the command line's --free 0).
	FreeSet bool
	// ReservedPercent reserves that percentage of the blocks for root, 0 to 50 (mke2fs's
	// -m). The default is 0: a virtual machine's root filesystem has no other users to be
	// protected from.
	ReservedPercent int
	// Align rounds a computed size up to a multiple of Align bytes (a power of two, at
	// least 4096). The default (0) is [DefaultAlign]; 4096 means no rounding.
	Align int64
	// Inodes fixes the inode count. The default gives mke2fs's ratio with room to spare.
	Inodes uint32
	// Label is the volume label (at most 16 bytes).
	Label string
	// UUID is the filesystem UUID as 32 hex digits, dashes allowed. The default derives
	// it, and the directory hash seed, from the manifest digest, so the same image gives
	// the same bytes. Given, it decides the hash seed too: versions of an image converted
	// with the same UUID keep the metadata they share byte for byte (every metadata
	// checksum depends on the UUID), which is what chunked, deduplicated stores of the
	// images need.
	UUID string
	// NoJournal leaves out the JBD2 journal.
	NoJournal bool
	// ReadOnly sets the read-only feature: the kernel mounts the image read-only.
	ReadOnly bool
}

// WithExt4 sets the shape of the ext4 image. The defaults are described on [Ext4Options].
func WithExt4(e Ext4Options) Option {
	return func(o *options) error {
		if e.Align == 0 {
			e.Align = DefaultAlign
		}
		if err := e.Validate(); err != nil {
			return err
		}
		o.ext4 = e
		return nil
	}
}

// Validate reports options that are out of range or exclude each other.
func (e Ext4Options) Validate() error {
	if e.Align != 0 && (e.Align < 4096 || e.Align&(e.Align-1) != 0) {
		return fmt.Errorf("alignment %d is not a power of two of at least 4096", e.Align)
	}
	if e.Size < 0 || e.FreeBytes < 0 || e.FreePercent < 0 || e.FreePercent > 10000 {
		return errors.New("negative size or free space")
	}
	if e.ReservedPercent < 0 || e.ReservedPercent > 50 {
		return fmt.Errorf("reserved percentage %d out of range [0, 50]", e.ReservedPercent)
	}
	if e.Size > 0 && (e.FreeBytes > 0 || e.FreePercent > 0 || e.FreeSet) {
		return errors.New("a fixed size and extra free space exclude each other")
	}
	if len(e.Label) > 16 {
		return fmt.Errorf("label %q is longer than 16 bytes", e.Label)
	}
	if e.UUID != "" {
		if _, err := parseUUID(e.UUID); err != nil {
			return err
		}
	}
	return nil
}

func parseUUID(s string) ([16]byte, error) {
	var u [16]byte
	h := strings.ReplaceAll(s, "-", "")
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != 16 {
		return u, fmt.Errorf("bad UUID %q", s)
	}
	copy(u[:], b)
	return u, nil
}

func (e Ext4Options) writerOptions(seed string) ([]ext4writer.Option, error) {
	opts := []ext4writer.Option{ext4writer.WithSeed(seed)}
	if e.Size > 0 {
		opts = append(opts, ext4writer.WithSize(e.Size))
	} else if e.Align > 4096 {
		opts = append(opts, ext4writer.WithAlign(e.Align))
	}
	if e.FreeSet || e.FreeBytes > 0 || e.FreePercent > 0 {
		opts = append(opts, ext4writer.WithFreeSpace(e.FreeBytes), ext4writer.WithFreePercent(e.FreePercent))
	}
	if e.ReservedPercent > 0 {
		opts = append(opts, ext4writer.WithReservedPercent(e.ReservedPercent))
	}
	if e.Inodes > 0 {
		opts = append(opts, ext4writer.WithInodeCount(e.Inodes))
	}
	if e.Label != "" {
		opts = append(opts, ext4writer.WithLabel(e.Label))
	}
	if e.UUID != "" {
		u, err := parseUUID(e.UUID)
		if err != nil {
			return nil, err
		}
		opts = append(opts, ext4writer.WithUUID(u))
	}
	if e.NoJournal {
		opts = append(opts, ext4writer.WithoutJournal())
	}
	if e.ReadOnly {
		opts = append(opts, ext4writer.WithReadOnly())
	}
	return opts, nil
}

// ErrNoSpace reports that the filesystem holding the output has too little free space for
// the estimated image.
var ErrNoSpace = errors.New("img2ext4: not enough free space for the output")

// checkSpace compares the free space of dir's filesystem with need bytes.
func checkSpace(dir string, need int64) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return nil // cannot tell; writing will report ENOSPC if it comes to that
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	if free < need {
		return fmt.Errorf("%w: %s has %d bytes free, the image needs at least %d", ErrNoSpace, dir, free, need)
	}
	return nil
}

// estimate is a lower bound of the image's data: the layers' compressed sizes.
func estimate(img v1.Image) int64 {
	m, err := img.Manifest()
	if err != nil {
		return 0
	}
	var n int64
	for _, l := range m.Layers {
		n += l.Size
	}
	return n
}
