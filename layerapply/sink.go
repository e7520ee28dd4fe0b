package layerapply

import "io"

// Sink receives the merged result of applying layers, one resolved operation at a time.
//
// [Apply] does all the layer reasoning (whiteouts, opaque directories, type replacement,
// symlink resolution, hard-link targets), so a Sink only carries out plain operations on
// names that are already safe. Every name a Sink sees satisfies [io/fs.ValidPath], contains
// no symbolic link in its parent directories, and has all its parents present as
// directories. The root directory is ".".
//
// The calls Apply makes are:
//   - Entry for a name that does not exist yet, or for a directory over an existing
//     directory, in which case the entry's metadata replaces the old metadata and the
//     children stay. Before any other replacement Apply calls Whiteout on the old name.
//   - Whiteout for a name that exists: remove it and everything below it. Removing one name
//     of a hard-linked file leaves the other names and their content as they are.
//   - Opaque for a directory that exists: remove all of its children, keeping the directory.
type Sink interface {
	// Entry creates e.Path, described by e (see [Entry]). For [TypeReg], body yields
	// exactly e.Size bytes. When e.Sparse is set, the bytes outside its segments are zeros
	// and body is also an [io.Seeker] that moves forward only, over holes without reading
	// them: a sink that keeps holes seeks to each segment and reads its Length bytes, and
	// never reads a TiB of zeros for a TiB-sized sparse file. For [TypeLink], e.Linkname is the resolved, existing,
	// non-directory name to link to. For [TypeSymlink], e.Linkname is the target exactly
	// as the layer gave it. e and body are valid only during the call: a sink that keeps
	// the entry copies it ([Entry.Clone]).
	Entry(e *Entry, body io.Reader) error
	// Whiteout removes name and everything below it.
	Whiteout(name string) error
	// Opaque removes every child of the directory dir, keeping dir itself.
	Opaque(dir string) error
}

// Tree is a [Sink] that can also read back the tree it holds and change an entry's
// metadata in place: what a [RootFS] needs. The sinks of this package ([Dir], [Tar] and
// [Ext4]) are Trees. Names are as a Sink sees them: clean, with no symbolic link in their
// parents.
type Tree interface {
	Sink
	// Lstat returns the metadata of name, which exists. The result belongs to the
	// caller.
	Lstat(name string) (*Entry, error)
	// Open returns the body of the regular file name. The caller closes it before the
	// next call that changes the tree.
	Open(name string) (io.ReadCloser, error)
	// SetMeta gives the existing e.Path the permission bits, owner, times and extended
	// attributes of e. Its type, body, link target and device numbers stay.
	SetMeta(e *Entry) error
}
