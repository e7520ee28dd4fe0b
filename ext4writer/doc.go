// Package ext4writer writes an ext4 filesystem image into an
// [io.WriterAt] in one pass, without root privileges or mkfs.
//
// Entries are added with [Writer.Create] (directories, regular files,
// symbolic links, character and block devices, FIFOs and sockets),
// [Writer.Link] (hard links) and removed with [Writer.Remove]. A regular
// file's body follows its Create through [Writer.Write] or
// [Writer.ReadFrom] and is written once, straight into the blocks it
// occupies in the image; all-zero 4 KiB blocks become holes, and a
// sparse file's holes are passed over with [Writer.Skip] without being
// written or given blocks (a 1 TiB file of a few data blocks costs a few
// blocks). Blocks of
// removed files are reused by later ones, and those still free at Close
// are made to read back zeros, so the image keeps no deleted data: holes
// are punched in a regular file, a destination implementing
// [ZeroRanger] (a block device) is asked to zero them, any other gets
// zeros written. The writer keeps only metadata
// in memory (a few hundred bytes per inode, no file data; the slots of
// removed entries stay until the writer goes, see arena.go), so it also
// serves as the merged tree of a layer applier.
//
// [Writer.Close] lays out and writes the metadata: inode tables,
// directories (hashed b-trees for large ones), extent trees, extended
// attribute blocks, bitmaps, group descriptors, superblocks with their
// sparse_super backups, and a JBD2 journal sized as mke2fs would.
// [Writer.Stats] then describes the result (size, free blocks, inodes).
//
// # Size
//
// Unless [WithSize] fixes it, the image is as large as its content,
// journal and metadata need plus free space ([Writer.MinSize] reports
// it): by default the free space leaves an ordinary user, as df shows
// inside the mounted image, the larger of 64 MiB ([DefaultFreeSpace])
// and 10 % of the content ([DefaultFreePercent]), so that a virtual
// machine can write to its root filesystem. Root has no reserved blocks
// unless [WithReservedPercent] asks. Linux keeps its own reserve of the
// smaller of 2 % of the blocks and 4096 blocks (s_resv_clusters) and
// refuses every write, even root's, that would eat into it; the sizing
// counts it, and blocks reserved for root, on top of the free space
// asked for. [WithFreeSpace] and [WithFreePercent] replace the default;
// WithFreeSpace(0) gives the smallest image, which still leaves
// [MinFreeSpace] so that a small write succeeds. When the content
// outgrows a fixed size, the writer takes the remaining entries without
// writing them, and Close fails with a *[SizeError] that tells the size
// that would fit.
//
// # Placement
//
// File bodies go where they are written, in the order they come: a layer
// applier that writes the lower layers first puts their data at the same
// blocks whatever comes above them. Inodes are numbered in order of
// creation (the numbers of removed inodes stay free), so what is added
// last neither renumbers nor lands amid what came before. Blocks freed by
// removed files are left for Close while they are no more than the
// journal, inode tables and free space the image gets anyway, and later
// bodies go above the data; beyond that, bodies fill them. Close lays out
// the metadata (inode tables, bitmaps, directories in inode order, then
// the journal) in those freed blocks first, or, when that leaves the
// image no larger, above the file data from the next multiple of a large
// power of two (up to the free space asked for, at least 2 MiB): the gap
// is free space the image has anyway, and the content may grow by up to
// the alignment without moving the metadata. The inode ratio counts whole
// groups (quarter groups in an image of one group), so the inodes per
// group do not change with small changes of the size: at most one group's
// share of inodes more than the ratio asks (2 MiB of inode table at the
// default ratio, 512 KiB in a one-group image). Free inode numbers cost
// nothing while the ratio gives more inodes than the highest number; past
// that, the numbers are closed up, in order. Two images that differ only
// in what was written last then keep most of their bytes at the same
// offsets, which is what chunked, deduplicated stores of images need;
// giving both the same UUID ([WithUUID]) keeps the metadata they share
// byte for byte too, as every metadata checksum depends on it.
//
// # Format
//
// The image has the features of mke2fs
// 1.47's ext4 profile minus orphan_file, metadata_csum_seed and
// resize_inode: has_journal ext_attr dir_index filetype extent 64bit
// flex_bg sparse_super large_file huge_file dir_nlink extra_isize
// metadata_csum, 4 KiB blocks and 256-byte inodes ([WithLegacy] drops
// metadata_csum and 64bit). Groups have 32768 blocks unless the inodes
// need more groups than that gives (a group holds at most 32768 inodes):
// then, as with mke2fs -N, the groups shrink, so that an image of many
// small files is not padded with full-size groups. Bodies already placed
// where the smaller groups' superblock backups go are moved, read back
// from the destination when it is an [io.ReaderAt] (an *os.File);
// otherwise the groups keep their full size. Inodes with the same extended attributes beyond what fits in
// the inode share one attribute block, up to the kernel's 1024.
//
// Output depends only on the calls made and the options: UUID and hash
// seed derive from [WithSeed] unless given, no clock is read, and
// directories are sorted at Close. Space never written stays a hole, so
// the destination must read back zeros there (a new or truncated file);
// the writer sets the final length with Truncate when the destination
// has it, or by writing the last byte.
//
// The writer refuses names that break the rules of [io/fs.ValidPath]
// (other bytes than NUL, including invalid UTF-8, are fine, as on Linux),
// does not follow symbolic links when resolving parents (the caller
// resolves them), rejects hard links to directories and extended
// attributes outside the user., trusted., security. and POSIX ACL names,
// and fails with a *[SizeError] when the image would exceed its fixed or
// maximum size. Errors name the operation and path; after
// an I/O or size error every call returns it. A Writer is meant for a
// single goroutine.
package ext4writer
