package verity

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strconv"
)

// BlockSize is the size in bytes of both the data blocks and the hash blocks.
const BlockSize = 4096

// Algorithm is the name of the hash algorithm, as veritysetup's --hash takes it.
const Algorithm = "sha256"

// MaxSaltSize is the longest salt the verity superblock holds, in bytes.
const MaxSaltSize = 256

// SuperblockSize is the size of the on-disk verity superblock; the tree after it starts
// at the next hash block.
const SuperblockSize = 512

const (
	digestSize    = sha256.Size
	hashesPerBlk  = BlockSize / digestSize // 128, a power of two as version 1 wants
	hashesPerBits = 7                      // log2(hashesPerBlk)
	maxLevels     = 63                     // veritysetup's limit
	readChunk     = 256 * BlockSize        // data read per ReadAt: 1 MiB
)

// ErrFormat reports data, a salt, a UUID or an offset that cannot make a dm-verity tree.
var ErrFormat = errors.New("verity: unsupported parameters")

// Tree describes a hash tree written by [Write]: everything veritysetup needs to verify
// or open the data with it.
type Tree struct {
	// RootHash is the digest at the top of the tree: the value to trust.
	RootHash []byte
	// Salt is the salt hashed before every block (may be empty).
	Salt []byte
	// Algorithm is the hash algorithm, always [Algorithm].
	Algorithm string
	// DataBlockSize and HashBlockSize are the block sizes, always [BlockSize].
	DataBlockSize, HashBlockSize int
	// DataBlocks is the number of data blocks the tree covers.
	DataBlocks uint64
	// HashOffset is where the hash area starts in the file written to, in bytes: the
	// superblock when there is one, else the tree (veritysetup's --hash-offset).
	HashOffset int64
	// HashSize is the number of bytes written from HashOffset: the superblock's block
	// and the tree.
	HashSize int64
	// Superblock tells whether a verity superblock starts the hash area.
	Superblock bool
	// UUID is the UUID in the superblock, in its usual text form.
	UUID string
}

// RootHashHex returns the root hash in hexadecimal, as veritysetup takes it.
func (t *Tree) RootHashHex() string { return hex.EncodeToString(t.RootHash) }

// SaltHex returns the salt in hexadecimal, or "-" for none, as veritysetup's --salt takes it.
func (t *Tree) SaltHex() string {
	if len(t.Salt) == 0 {
		return "-"
	}
	return hex.EncodeToString(t.Salt)
}

// OpenArgs returns the command line that maps the verified device name with
// veritysetup: data is the data device or image file, hash the file holding the hash
// area (the same file for a tree appended to the data).
func (t *Tree) OpenArgs(data, name, hash string) []string {
	args := []string{"veritysetup", "open", data, name, hash, t.RootHashHex()}
	if t.HashOffset != 0 {
		args = append(args, "--hash-offset="+strconv.FormatInt(t.HashOffset, 10))
	}
	if !t.Superblock {
		args = append(args, "--no-superblock", "--format=1", "--hash="+t.Algorithm,
			"--data-block-size="+strconv.Itoa(t.DataBlockSize), "--hash-block-size="+strconv.Itoa(t.HashBlockSize),
			"--data-blocks="+strconv.FormatUint(t.DataBlocks, 10), "--salt="+t.SaltHex())
	}
	return args
}

type options struct {
	salt       []byte
	uuid       *[16]byte
	superblock bool
}

// Option configures [Write].
type Option func(*options) error

// WithSalt sets the salt, at most [MaxSaltSize] bytes. The default is no salt
// (veritysetup's --salt=-); callers should pass one, derived from something stable when
// the output must be reproducible.
func WithSalt(salt []byte) Option {
	return func(o *options) error {
		if len(salt) > MaxSaltSize {
			return fmt.Errorf("%w: salt of %d bytes, at most %d fit", ErrFormat, len(salt), MaxSaltSize)
		}
		o.salt = append([]byte(nil), salt...)
		return nil
	}
}

// WithUUID sets the UUID written in the superblock. The default derives it from the
// root hash and the salt.
func WithUUID(u [16]byte) Option {
	return func(o *options) error { o.uuid = &u; return nil }
}

// WithoutSuperblock writes the bare tree at the offset, without a superblock
// (veritysetup's --no-superblock); opening it then needs all the parameters (see
// [Tree.OpenArgs]). The default writes the superblock.
func WithoutSuperblock() Option {
	return func(o *options) error { o.superblock = false; return nil }
}

// HashSize returns the number of bytes [Write] writes for dataSize bytes of data, with
// the superblock's block: to reserve room for the tree before writing it.
func HashSize(dataSize int64) int64 {
	if dataSize <= 0 {
		return BlockSize
	}
	blocks := uint64(dataSize+BlockSize-1) / BlockSize
	_, sizes := levelSizes(blocks)
	n := int64(BlockSize)
	for _, s := range sizes {
		n += int64(s) * BlockSize
	}
	return n
}

// levelSizes returns the number of levels veritysetup makes for blocks data blocks and
// the number of hash blocks in each, the bottom level (hashes of data) first. One data
// block needs no level: its digest is the root hash.
func levelSizes(blocks uint64) (int, []uint64) {
	levels := 0
	for hashesPerBits*levels < 64 && (blocks-1)>>(hashesPerBits*levels) != 0 {
		levels++
	}
	sizes := make([]uint64, levels)
	for i := range sizes {
		shift := uint(hashesPerBits * (i + 1))
		if shift >= 64 {
			sizes[i] = 1
			continue
		}
		sizes[i] = (blocks + (1 << shift) - 1) >> shift
	}
	return levels, sizes
}

// level is one level of the tree being built: the hash block being filled and where
// the next one goes.
type level struct {
	block []byte
	n     int   // bytes of block filled
	next  int64 // offset in the output of the next block of this level
}

// builder hashes blocks bottom up, writing each hash block when it is full.
type builder struct {
	w      io.WriterAt
	h      hash.Hash
	salt   []byte
	levels []level
	sum    [digestSize]byte
	root   []byte
}

// digest returns the salted digest of b, valid until the next call.
func (b *builder) digest(p []byte) []byte {
	b.h.Reset()
	b.h.Write(b.salt)
	b.h.Write(p)
	return b.h.Sum(b.sum[:0])
}

// push adds the digest d to level i, writing the level's block when it fills.
func (b *builder) push(i int, d []byte) error {
	l := &b.levels[i]
	copy(l.block[l.n:], d)
	l.n += len(d)
	if l.n == BlockSize {
		return b.flush(i)
	}
	return nil
}

// flush writes level i's block, zero-padded, and pushes its digest one level up; the
// top level's digest is the root hash.
func (b *builder) flush(i int) error {
	l := &b.levels[i]
	clear(l.block[l.n:])
	if _, err := b.w.WriteAt(l.block, l.next); err != nil {
		return fmt.Errorf("write hash block at %d: %w", l.next, err)
	}
	l.next += BlockSize
	l.n = 0
	d := b.digest(l.block)
	if i+1 == len(b.levels) {
		b.root = append([]byte(nil), d...)
		return nil
	}
	return b.push(i+1, d)
}

// Write computes the dm-verity hash tree of the first dataSize bytes of data, which must
// be a positive multiple of [BlockSize], and writes the hash area to w at offset, a
// multiple of BlockSize: the superblock, zero-padded to a block, then the tree's levels
// from the top one down, each hash block written once. It reads data in order, a chunk
// at a time, and keeps one hash block per level in memory. It does not close or sync w.
// It stops with ctx's error when ctx is done.
func Write(ctx context.Context, w io.WriterAt, offset int64, data io.ReaderAt, dataSize int64, opts ...Option) (*Tree, error) {
	o := &options{superblock: true}
	for _, opt := range opts {
		if err := opt(o); err != nil {
			return nil, err
		}
	}
	if dataSize <= 0 || dataSize%BlockSize != 0 {
		return nil, fmt.Errorf("%w: data size %d is not a positive multiple of %d", ErrFormat, dataSize, BlockSize)
	}
	if offset < 0 || offset%BlockSize != 0 {
		return nil, fmt.Errorf("%w: hash offset %d is not a multiple of %d", ErrFormat, offset, BlockSize)
	}
	blocks := uint64(dataSize / BlockSize)
	nlevels, sizes := levelSizes(blocks)
	if nlevels > maxLevels {
		return nil, fmt.Errorf("%w: %d data blocks need %d levels", ErrFormat, blocks, nlevels)
	}
	treeStart := offset
	if o.superblock {
		treeStart += BlockSize
	}
	b := &builder{w: w, h: sha256.New(), salt: o.salt, levels: make([]level, nlevels)}
	// The top level comes first, the bottom one last.
	pos := treeStart
	for i := nlevels - 1; i >= 0; i-- {
		b.levels[i] = level{block: make([]byte, BlockSize), next: pos}
		pos += int64(sizes[i]) * BlockSize
	}
	buf := make([]byte, min(readChunk, dataSize))
	for off := int64(0); off < dataSize; {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		p := buf[:min(int64(len(buf)), dataSize-off)]
		if n, err := data.ReadAt(p, off); n < len(p) {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("read data at %d: %w", off+int64(n), err)
		}
		for q := p; len(q) > 0; q = q[BlockSize:] {
			d := b.digest(q[:BlockSize])
			if nlevels == 0 {
				b.root = append([]byte(nil), d...)
				continue
			}
			if err := b.push(0, d); err != nil {
				return nil, err
			}
		}
		off += int64(len(p))
	}
	for i := range b.levels {
		if b.levels[i].n > 0 {
			if err := b.flush(i); err != nil {
				return nil, err
			}
		}
	}
	t := &Tree{RootHash: b.root, Salt: o.salt, Algorithm: Algorithm, DataBlockSize: BlockSize, HashBlockSize: BlockSize,
		DataBlocks: blocks, HashOffset: offset, HashSize: pos - offset, Superblock: o.superblock}
	if t.Salt == nil {
		t.Salt = []byte{}
	}
	if o.superblock {
		u := deriveUUID(t.RootHash, t.Salt)
		if o.uuid != nil {
			u = *o.uuid
		}
		t.UUID = formatUUID(u)
		sb := superblock(t, u)
		if _, err := w.WriteAt(sb, offset); err != nil {
			return nil, fmt.Errorf("write verity superblock at %d: %w", offset, err)
		}
	}
	return t, nil
}

// superblock encodes the verity superblock veritysetup writes, zero-padded to a hash
// block: signature "verity", superblock version 1, hash type 1, the UUID, the algorithm
// name, the block sizes, the data block count and the salt, little-endian.
func superblock(t *Tree, uuid [16]byte) []byte {
	b := make([]byte, BlockSize)
	copy(b[0:8], "verity")
	binary.LittleEndian.PutUint32(b[8:], 1)  // superblock version
	binary.LittleEndian.PutUint32(b[12:], 1) // hash type: normal (not Chrome OS)
	copy(b[16:32], uuid[:])
	copy(b[32:64], t.Algorithm)
	binary.LittleEndian.PutUint32(b[64:], uint32(t.DataBlockSize))
	binary.LittleEndian.PutUint32(b[68:], uint32(t.HashBlockSize))
	binary.LittleEndian.PutUint64(b[72:], t.DataBlocks)
	binary.LittleEndian.PutUint16(b[80:], uint16(len(t.Salt)))
	copy(b[88:88+MaxSaltSize], t.Salt)
	return b
}

// deriveUUID makes a version 4 shaped UUID from the root hash and salt, so that the
// superblock depends only on the data and the salt.
func deriveUUID(root, salt []byte) [16]byte {
	h := sha256.New()
	h.Write([]byte("img2ext4 verity uuid\x00"))
	h.Write(salt)
	h.Write(root)
	var u [16]byte
	copy(u[:], h.Sum(nil))
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u
}

func formatUUID(u [16]byte) string {
	s := hex.EncodeToString(u[:])
	return s[0:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20] + "-" + s[20:32]
}

// ParseUUID parses a UUID of 32 hexadecimal digits, dashes allowed, for [WithUUID].
func ParseUUID(s string) ([16]byte, error) {
	var u [16]byte
	h := make([]byte, 0, 32)
	for i := 0; i < len(s); i++ {
		if s[i] != '-' {
			h = append(h, s[i])
		}
	}
	if len(h) != 32 {
		return u, fmt.Errorf("%w: bad UUID %q", ErrFormat, s)
	}
	if _, err := hex.Decode(u[:], h); err != nil {
		return u, fmt.Errorf("%w: bad UUID %q", ErrFormat, s)
	}
	return u, nil
}
