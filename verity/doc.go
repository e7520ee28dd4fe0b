// Package verity computes the dm-verity hash tree of a block device image, the way
// cryptsetup's veritysetup formats it, so the kernel's dm-verity target can check every
// block read from the image against one trusted root hash.
//
// [Write] reads the data through an [io.ReaderAt], one block at a time and never all of
// it at once, and writes the tree, after the on-disk verity superblock, to an
// [io.WriterAt] at a given offset: after the data on the same file (veritysetup's
// --hash-offset) or at the start of a separate hash file. The format is fixed to what
// veritysetup makes by default: hash format version 1 (the salt is hashed before each
// block), SHA-256, 4096-byte data and hash blocks, 128 digests to a hash block, the
// levels stored from the top one down. The salt is given by the caller
// ([WithSalt]); the superblock's UUID is derived from the root hash unless given
// ([WithUUID]), so the same data and salt always give the same bytes.
//
// The package knows nothing of ext4 or of the files it is given: the data size must be
// a whole number of blocks, and the caller chooses where the tree goes. It refuses data
// of zero blocks, a salt over 256 bytes and an offset that is not a multiple of the
// block size.
package verity
