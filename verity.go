package img2ext4

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/img2ext4/img2ext4/verity"
)

// VerityOptions asks [Convert] to protect an ext4 image with a dm-verity hash tree (see
// package [verity]): SHA-256, 4096-byte data and hash blocks, hash format version 1,
// a verity superblock as veritysetup writes it, then the tree. The tree is computed once
// the filesystem is complete and covers all of it.
type VerityOptions struct {
	// Out, when set, is a separate file that receives the hash area (superblock and
	// tree, hash offset 0), written like the output: under a temporary name beside it,
	// synced, and renamed into place right after the output. The default (empty)
	// appends the hash area to the image file, right after the filesystem: the hash
	// offset is then the filesystem's size, a multiple of 4096 (of [Ext4Options.Align],
	// indeed), and the file is that much longer than the filesystem.
	Out string
	// Salt is hashed before every block, at most 256 bytes. The default (nil) derives 32
	// bytes from the manifest digest and the ext4 options, so that the same image
	// converted the same way gets the same salt, and the output stays reproducible:
	// SHA-256 of "img2ext4 dm-verity salt v1", a zero byte, the manifest digest
	// ("sha256:…"), a zero byte and the [Ext4Options] as JSON.
	Salt []byte
}

// WithVerity computes a dm-verity hash tree over the ext4 image and appends it or writes
// it to a file of its own; the result's [Result.Verity] reports it. Only [FormatExt4]
// takes it, and not into a block device (a usage error, found before any download). The
// default makes no hash tree.
func WithVerity(v VerityOptions) Option {
	return func(o *options) error {
		if len(v.Salt) > verity.MaxSaltSize {
			return fmt.Errorf("verity salt of %d bytes: at most %d", len(v.Salt), verity.MaxSaltSize)
		}
		o.verity = &v
		return nil
	}
}

// Verity describes the dm-verity hash tree of an image, and how to open it.
type Verity struct {
	// RootHash is the root hash in hexadecimal: the value a verified boot must trust.
	RootHash string `json:"root_hash"`
	// Salt is the salt in hexadecimal ("-" for none, as veritysetup writes it).
	Salt string `json:"salt"`
	// HashAlgorithm is the hash algorithm, "sha256".
	HashAlgorithm string `json:"hash_algorithm"`
	// DataBlocks is the number of 4096-byte blocks the tree covers: the whole filesystem.
	DataBlocks uint64 `json:"data_blocks"`
	// DataBlockSize and HashBlockSize are the block sizes in bytes, 4096.
	DataBlockSize int `json:"data_block_size"`
	HashBlockSize int `json:"hash_block_size"`
	// HashFile is the file holding the hash area: the image itself when appended, else
	// [VerityOptions.Out], as given.
	HashFile string `json:"hash_file"`
	// HashOffset is where the hash area (the verity superblock) starts in HashFile, in
	// bytes: veritysetup's --hash-offset.
	HashOffset int64 `json:"hash_offset"`
	// HashSize is the size of the hash area in bytes.
	HashSize int64 `json:"hash_size"`
	// UUID is the UUID in the verity superblock, derived from the root hash and salt.
	UUID string `json:"uuid"`
	// Open is the veritysetup command line that maps the image as a verified read-only
	// device, named after the first 12 digits of the root hash; paths are absolute
	// and quoted for a POSIX shell.
	Open string `json:"open"`
}

// checkVerity refuses what WithVerity cannot do with this output, before any download.
func (o *options) checkVerity(t *target) error {
	if o.verity == nil {
		return nil
	}
	if t.kind == outBlock {
		return &CheckError{Op: "verity", Path: t.out, Err: errors.New("a hash tree cannot go into a block device yet; write an image file, or make the tree with veritysetup format")}
	}
	if out := o.verity.Out; out != "" {
		file := out
		if real, err := filepath.EvalSymlinks(file); err == nil {
			file = real
		}
		if fi, err := os.Stat(file); err == nil && !fi.Mode().IsRegular() {
			return &CheckError{Op: "write verity", Path: out, Err: errors.New("exists and is not a regular file")}
		}
		if file == t.real {
			return &CheckError{Op: "write verity", Path: out, Err: errors.New("is the output itself; leave out the file to append the tree")}
		}
		if err := checkDirWritable(filepath.Dir(file)); err != nil {
			return &CheckError{Op: "write verity", Path: out, Err: err}
		}
	}
	return nil
}

// veritySalt returns the salt asked for, or the one derived from digest and e.
func (o *options) veritySalt(digest v1.Hash, e Ext4Options) ([]byte, error) {
	if o.verity.Salt != nil {
		return o.verity.Salt, nil
	}
	b, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	h.Write([]byte("img2ext4 dm-verity salt v1\x00"))
	h.Write([]byte(digest.String()))
	h.Write([]byte{0})
	h.Write(b)
	return h.Sum(nil), nil
}

// writeVerity computes the hash tree of the first size bytes of f, the finished image
// at out, and appends it to f or stages the separate file for commitVerity.
func (o *options) writeVerity(ctx context.Context, f outputFile, out string, size int64, salt []byte) (*Verity, error) {
	r, ok := f.(io.ReaderAt)
	if !ok {
		return nil, fmt.Errorf("verity %s: the output cannot be read back", out)
	}
	var tree *verity.Tree
	hashFile := out
	if o.verity.Out == "" {
		t, err := verity.Write(ctx, f, size, r, size, verity.WithSalt(salt))
		if err != nil {
			return nil, fmt.Errorf("verity %s: %w", out, err)
		}
		tree = t
	} else {
		hashFile = o.verity.Out
		file := hashFile
		if real, err := filepath.EvalSymlinks(file); err == nil {
			file = real
		}
		st, err := stageFile(file, "write verity", func(hf *os.File) error {
			t, err := verity.Write(ctx, hf, 0, r, size, verity.WithSalt(salt))
			if err != nil {
				return fmt.Errorf("write verity %s: %w", hashFile, err)
			}
			tree = t
			return nil
		})
		if err != nil {
			return nil, err
		}
		o.verityStaged = st
	}
	absData, absHash := absPath(out), absPath(hashFile)
	args := tree.OpenArgs(absData, "img2ext4-"+tree.RootHashHex()[:12], absHash)
	for i, a := range args {
		args[i] = shellQuote(a)
	}
	return &Verity{RootHash: tree.RootHashHex(), Salt: tree.SaltHex(), HashAlgorithm: tree.Algorithm, DataBlocks: tree.DataBlocks,
		DataBlockSize: tree.DataBlockSize, HashBlockSize: tree.HashBlockSize, HashFile: hashFile, HashOffset: tree.HashOffset,
		HashSize: tree.HashSize, UUID: tree.UUID, Open: strings.Join(args, " ")}, nil
}

// commitVerity renames a staged separate hash file into place, or discards it when the
// output failed.
func (o *options) commitVerity(outErr error) error {
	s := o.verityStaged
	o.verityStaged = nil
	if outErr != nil {
		s.discard()
		return outErr
	}
	return s.commit()
}

func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// shellQuote quotes s for a POSIX shell when it holds anything but safe characters.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=+./:,@%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// ParseVeritySalt returns the hexadecimal salt s as [VerityOptions.Salt], "-" meaning
// none (as veritysetup's --salt takes it).
func ParseVeritySalt(s string) ([]byte, error) {
	if s == "-" {
		return []byte{}, nil
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("verity salt %q: want hexadecimal digits, or - for none", s)
	}
	if len(b) > verity.MaxSaltSize {
		return nil, fmt.Errorf("verity salt of %d bytes: at most %d", len(b), verity.MaxSaltSize)
	}
	return b, nil
}
