package layerapply

import (
	"io"
	"io/fs"
	"time"
)

// RootFS is read and write access to the merged root filesystem of an image, after its
// last layer and before the output is finished. It is what a mutation step (an injected
// init, CA certificates, a user's hook) works on, the same for every output format.
//
// Names are slash-separated paths inside the image: "/etc/ssl" and "etc/ssl" mean the same,
// and "." or "/" is the root. Every name resolves inside the image root with chroot
// semantics: a symbolic link in a parent directory is followed inside the root, whether
// its target is absolute or relative, and ".." never climbs above the root. Nothing on the
// host is ever read or written because of a name or a link inside the image.
//
// Only Stat, Open and WriteFile follow a symbolic link that is the last element of name;
// every other method acts on name itself. A RootFS is not safe for concurrent use: one
// goroutine makes all calls, and it is valid only during the mutation step it was passed to.
type RootFS interface {
	// Lstat describes name without following a final symbolic link. Sys() of the result
	// carries the entry's full metadata (owner, device numbers, extended attributes).
	Lstat(name string) (fs.FileInfo, error)
	// Stat describes name, following a final symbolic link inside the root.
	Stat(name string) (fs.FileInfo, error)
	// ReadDir lists the directory name, sorted by file name.
	ReadDir(name string) ([]fs.DirEntry, error)
	// Readlink returns the target of the symbolic link name exactly as stored.
	Readlink(name string) (string, error)
	// Open opens the regular file name for reading, following a final symbolic link
	// inside the root. The caller closes the file before the next call that changes the
	// tree.
	Open(name string) (fs.File, error)
	// WriteFile creates or replaces the regular file name with the bytes of r, following a
	// final symbolic link inside the root. When name exists as a regular file, its mode,
	// owner, times and extended attributes are kept and perm is ignored; a new file gets
	// perm, owner 0:0 and the conversion's fixed time. The parent directory must exist.
	// WriteFile does not close r.
	WriteFile(name string, r io.Reader, perm fs.FileMode) error
	// MkdirAll creates the directory name and any missing parents with perm, owner 0:0.
	// An existing directory is left as it is.
	MkdirAll(name string, perm fs.FileMode) error
	// Symlink creates the symbolic link name pointing to target; name must not exist.
	Symlink(target, name string) error
	// Link makes newname another name of the regular file oldname; newname must not exist.
	Link(oldname, newname string) error
	// RemoveAll removes name and everything below it. A missing name is not an error.
	RemoveAll(name string) error
	// Chmod sets the permission bits (and setuid, setgid, sticky) of name.
	Chmod(name string, mode fs.FileMode) error
	// Chown sets the owner of name.
	Chown(name string, uid, gid int) error
	// Chtimes sets the access and modification times of name.
	Chtimes(name string, atime, mtime time.Time) error
	// Setxattr sets the extended attribute attr of name to value.
	Setxattr(name, attr string, value []byte) error
	// Removexattr removes the extended attribute attr of name; a missing one is not an
	// error.
	Removexattr(name, attr string) error
	// EvalSymlinks returns the name name resolves to inside the root, with every symbolic
	// link followed, as a clean path relative to the root ("." for the root). It fails
	// when a link cannot be resolved or loops.
	EvalSymlinks(name string) (string, error)
}
