package artifact

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"

	"github.com/img2ext4/img2ext4/verity"
)

// superblockInfo is what Push reads from an image: the ext4 filesystem's size and UUID
// and, when a dm-verity hash area follows the filesystem, its root hash and salt.
type superblockInfo struct {
	fsSize   int64
	uuid     string
	rootHash string // hexadecimal; "" without a hash tree
	salt     string // hexadecimal, "-" for none
}

// readSuperblock reads the ext4 superblock of an image of size bytes: the filesystem's
// size (its block count times its block size) and UUID. An image without the ext4 magic,
// or a filesystem larger than the image, wraps [ErrNotArtifact].
func readSuperblock(r io.ReaderAt, size int64) (*superblockInfo, error) {
	sb := make([]byte, 1024)
	if size < 2048 {
		return nil, fmt.Errorf("%w: %d bytes is too small for an ext4 filesystem", ErrNotArtifact, size)
	}
	if _, err := r.ReadAt(sb, 1024); err != nil {
		return nil, fmt.Errorf("read ext4 superblock: %w", err)
	}
	le := binary.LittleEndian
	if le.Uint16(sb[0x38:]) != 0xef53 {
		return nil, fmt.Errorf("%w: no ext4 superblock (magic 0xef53 at offset 1080)", ErrNotArtifact)
	}
	logBlock := le.Uint32(sb[0x18:])
	if logBlock > 6 { // 64 KiB blocks at most
		return nil, fmt.Errorf("%w: ext4 block size 2^%d", ErrNotArtifact, 10+logBlock)
	}
	blocks := uint64(le.Uint32(sb[0x4:]))
	if le.Uint32(sb[0x60:])&0x80 != 0 { // INCOMPAT_64BIT
		blocks |= uint64(le.Uint32(sb[0x150:])) << 32
	}
	fsSize := int64(blocks << (10 + logBlock))
	if blocks > 1<<44 || fsSize > size || fsSize <= 0 {
		return nil, fmt.Errorf("%w: the ext4 superblock says %d blocks of %d bytes, the image has %d bytes", ErrNotArtifact, blocks, 1024<<logBlock, size)
	}
	u := hex.EncodeToString(sb[0x68:0x78])
	return &superblockInfo{fsSize: fsSize, uuid: u[0:8] + "-" + u[8:12] + "-" + u[12:16] + "-" + u[16:20] + "-" + u[20:32]}, nil
}

// readVerity looks for a dm-verity hash area (superblock and tree) right after the
// filesystem, as img2ext4 --verity appends it, and when there is one recomputes the tree
// over the filesystem with the salt and UUID its superblock names: every byte must match
// what the image holds. It sets info's root hash and salt; it leaves them empty when no
// verity superblock follows the filesystem.
func readVerity(ctx context.Context, r io.ReaderAt, size int64, info *superblockInfo) error {
	if size-info.fsSize < 2*verity.BlockSize || info.fsSize%verity.BlockSize != 0 {
		return nil
	}
	sb := make([]byte, verity.BlockSize)
	if _, err := r.ReadAt(sb, info.fsSize); err != nil {
		return fmt.Errorf("read verity superblock at %d: %w", info.fsSize, err)
	}
	le := binary.LittleEndian
	if string(sb[:8]) != "verity\x00\x00" {
		return nil
	}
	saltSize := int(le.Uint16(sb[80:]))
	if le.Uint32(sb[8:]) != 1 || le.Uint32(sb[12:]) != 1 || string(bytes.TrimRight(sb[32:64], "\x00")) != verity.Algorithm ||
		le.Uint32(sb[64:]) != verity.BlockSize || le.Uint32(sb[68:]) != verity.BlockSize ||
		int64(le.Uint64(sb[72:])) != info.fsSize/verity.BlockSize || saltSize > verity.MaxSaltSize {
		return fmt.Errorf("%w: the dm-verity superblock at %d is not version 1, sha256, 4096-byte blocks over the whole filesystem", ErrNotArtifact, info.fsSize)
	}
	salt := append([]byte(nil), sb[88:88+saltSize]...)
	var uuid [16]byte
	copy(uuid[:], sb[16:32])
	cmp := &compareWriter{r: r}
	t, err := verity.Write(ctx, cmp, info.fsSize, r, info.fsSize, verity.WithSalt(salt), verity.WithUUID(uuid))
	if err != nil {
		return fmt.Errorf("check dm-verity hash tree: %w", err)
	}
	if cmp.err != nil {
		return fmt.Errorf("check dm-verity hash tree: %w", cmp.err)
	}
	info.rootHash, info.salt = t.RootHashHex(), t.SaltHex()
	return nil
}

// compareWriter is an io.WriterAt that compares what is written with what r holds at the
// same offsets, remembering the first difference.
type compareWriter struct {
	r   io.ReaderAt
	buf []byte
	err error
}

func (c *compareWriter) WriteAt(p []byte, off int64) (int, error) {
	if c.err != nil {
		return len(p), nil
	}
	if cap(c.buf) < len(p) {
		c.buf = make([]byte, len(p))
	}
	b := c.buf[:len(p)]
	if _, err := c.r.ReadAt(b, off); err != nil {
		c.err = fmt.Errorf("read hash area at %d: %w", off, err)
	} else if !bytes.Equal(b, p) {
		c.err = fmt.Errorf("%w: the dm-verity hash area at %d does not match the filesystem", ErrCorrupt, off)
	}
	return len(p), nil
}
