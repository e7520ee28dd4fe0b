// Package layerapply merges the layers of a container image, in order, into a [Sink].
//
// [Apply] streams each layer once: package layerstream turns the blob into its uncompressed
// tar stream, verified against the DiffID in the image config, and Apply reads the tar and
// turns every member into a plain, safe operation on the sink. All layer
// semantics live here, so every sink (a directory, a flattened tar, an ext4 image) merges
// the same way:
//
//   - ".wh.NAME" removes NAME and everything below it from lower layers only; a whiteout
//     never removes an entry written earlier in the same layer.
//   - ".wh..wh..opq" hides every lower-layer child of its directory, wherever it stands in
//     the layer's tar order; the directory itself stays.
//   - AUFS bookkeeping (".wh..wh.plnk", ".wh..wh.aufs") is skipped; whiteout files never
//     reach the sink.
//   - A directory over a directory merges, the upper metadata winning; any other
//     replacement removes the old entry first (file, directory and symlink swap freely).
//   - Hard links follow inode identity. A link may name a file of an earlier layer, may give
//     its target as an absolute path, and may come before its target in the tar.
//   - Every path resolves inside the root with chroot semantics: symlinked parents
//     (merged-usr "bin -> usr/bin", absolute targets) are followed inside the image, and
//     ".." never climbs above the root.
//
// Apply refuses, with an [*EntryError] naming the layer and entry: names that escape the
// root lexically, whiteouts that name "." or "..", whiteouts under a symbolic link, hard links
// to directories or to missing targets, and input beyond the limits set by [WithLimits].
// PAX global headers are ignored; GNU and PAX long names, sparse files, TypeRegA, and
// SCHILY.xattr and LIBARCHIVE.xattr records are understood. A repeated entry for one path
// replaces the earlier one.
//
// Sparse files (GNU tar's PAX formats 0.0, 0.1 and 1.0 and the old GNU type 'S') are
// applied from their maps: Apply reads a sparse entry's map itself, checks it (segments
// sorted, apart, inside the file's size, at most [MaxSparseSegments], their data exactly
// what the entry holds) and hands the sink an [Entry] whose Sparse field lists the data
// segments, with a body that seeks over the holes, so that no sink reads or writes the
// zeros of a hole: [NewExt4] gives holes no blocks, [NewDir] writes the segments at their
// offsets and sets the size, [NewTar] writes a PAX 1.0 sparse entry. A map that breaks
// these rules is an [ErrInvalidEntry] saying which segment is wrong. A 1 TiB sparse entry
// converts into an ext4 image in about 25 ms with 52 KiB written, metadata included
// (BenchmarkSparseTiB, 2 cores, load average 6.5; archive/tar filling its holes with zeros
// took 48 s). Dense files' all-zero 4 KiB blocks are found by bytes.Equal against a block
// of zeros (about 30 GB/s here, 10 times the 8-byte OR loop it replaced, BenchmarkIsZero)
// and left as holes by the ext4 and directory sinks.
//
// Metadata is decided here too, once for every sink, as ext4 and the kernel can hold and
// mean it (see [Warning]): a v3 file capability is kept (as v2) only for the namespace root
// uid 0, since for any other uid it would grant the capability to real root; malformed
// capabilities, invalid POSIX ACLs, ACLs on symbolic links, default ACLs on non-directories,
// attribute namespaces ext4 has no index for (system.nfs4_acl, btrfs.*), names over 255
// bytes and attributes beyond one 4 KiB block are dropped; valid ACLs out of order are
// sorted; GNU tar's text ACLs (SCHILY.acl.access, SCHILY.acl.default) become
// system.posix_acl_* attributes, user and group names resolved against the image's own
// /etc/passwd and /etc/group as merged so far; entries whose name or link target passes PATH_MAX, or with
// a path element over 255 bytes, are skipped. Each of these is reported through
// [WithWarnings]; [WithStrict] makes the losses errors.
//
// Layers are applied strictly in order, but as many layers as there are cores are
// decompressed at once, ahead of the one being applied, each verified against its DiffID
// on a goroutine of its own, their bytes waiting in memory and then in unlinked temporary
// files within a budget (layerstream.Pipeline; [WithJobs], [WithDecompressBuffer]).
//
// A [Merger] keeps the merged tree after Apply for changing the result before the sink is
// finished: [Merger.RootFS] is the root-confined mutation API ([RootFS]: read, write,
// mkdir, link, remove, chmod, chown, xattrs, every name resolved inside the image), and
// [Merger.Add] applies one more tar entry.
//
// Every sink receives the same typed [Entry]. The sinks in this package are peers:
// [NewDir], a root filesystem directory; [NewTar], one flattened, deterministic tar; and
// [NewExt4], an ext4 image over ext4writer. All three are [Tree]s, which a RootFS reads
// back and changes.
package layerapply
