package img2ext4

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/img2ext4/img2ext4/ext4writer"
	"github.com/img2ext4/img2ext4/layerapply"
	"golang.org/x/sys/unix"
)

// DefaultAlign is the size an ext4 image is rounded up to unless told otherwise: 2 MiB,
// which virtio-pmem devices require.
const DefaultAlign = 2 << 20

// Ext4Options shapes the ext4 image [Convert] writes with [FormatExt4].
type Ext4Options struct {
	// Size fixes the image size in bytes; the content must fit. The default (0) is the
	// smallest image that holds the content, its journal and the free space asked for,
	// rounded up to Align.
	Size int64
	// FreeBytes and FreePercent ask for extra free space in a smallest image: bytes, or a
	// percentage of the smallest size. Both add up. The default is none.
	FreeBytes   int64
	FreePercent int
	// Align rounds a computed size up to a multiple of Align bytes (a power of two, at
	// least 4096). The default (0) is [DefaultAlign]; 4096 means no rounding.
	Align int64
	// Inodes fixes the inode count. The default gives mke2fs's ratio with room to spare.
	Inodes uint32
	// Label is the volume label (at most 16 bytes).
	Label string
	// UUID is the filesystem UUID as 32 hex digits, dashes allowed. The default derives
	// it, and the directory hash seed, from the manifest digest, so the same image gives
	// the same bytes.
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
	if e.Size > 0 && (e.FreeBytes > 0 || e.FreePercent > 0) {
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
	}
	if e.FreeBytes > 0 {
		opts = append(opts, ext4writer.WithFreeSpace(e.FreeBytes))
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

func convertExt4(ctx context.Context, ref, out string, o *options) (res *Result, err error) {
	t, err := openTarget(out, o.format)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	e := o.ext4
	if err := t.fixSize(&e); err != nil {
		return nil, err
	}
	o.check = func(img v1.Image) error { return t.checkSpace(img, e.Size) }
	err = t.write("write image", func(f outputFile) error {
		var w *ext4writer.Writer
		res, err = run(ctx, ref, o, func(img v1.Image) (layerapply.Sink, error) {
			digest, err := img.Digest()
			if err != nil {
				return nil, err
			}
			wopts, err := e.writerOptions(digest.String())
			if err != nil {
				return nil, err
			}
			if w, err = ext4writer.New(f, wopts...); err != nil {
				return nil, err
			}
			return &ext4Sink{w: w}, nil
		}, func() error {
			if e.Size == 0 {
				min, err := w.MinSize()
				if err != nil {
					return err
				}
				target := min + min*int64(e.FreePercent)/100
				target = (target + e.Align - 1) / e.Align * e.Align
				if target != min {
					if err := w.SetSize(target); err != nil {
						return err
					}
				}
			}
			return w.Close()
		})
		return err
	})
	return res, err
}
