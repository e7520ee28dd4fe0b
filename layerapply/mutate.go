package layerapply

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"syscall"
	"time"
)

// RootFS returns the mutation API over the merged tree, for changes after the last layer
// and before the sink is finished; see [RootFS]. The sink must be a [Tree], as every sink
// of this package is. Changes go to the sink as entries of one more layer above
// everything applied so far. New entries get owner 0:0 and the image's creation time from
// its config (the Unix epoch when it has none), so the output still depends only on the
// input.
func (m *Merger) RootFS() (RootFS, error) {
	t, ok := m.a.sink.(Tree)
	if !ok {
		return nil, fmt.Errorf("layerapply: sink %T cannot be read back: it is no Tree", m.a.sink)
	}
	if !m.added {
		m.added = true
		m.a.startLayer(m.layers)
		m.a.digest = "mutate"
		m.layers++
	}
	now := m.a.created
	if now.IsZero() {
		now = time.Unix(0, 0).UTC()
	}
	return &rootFS{a: m.a, t: t, now: now}, nil
}

// rootFS implements [RootFS] over the applier's tree of names and a [Tree] sink holding
// the metadata and bodies.
type rootFS struct {
	a   *applier
	t   Tree
	now time.Time
}

var _ RootFS = (*rootFS)(nil)

// errLoop is the error of a name whose symbolic links do not end.
var errLoop = syscall.ELOOP

func pathErr(op, name string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return err
	}
	return &fs.PathError{Op: op, Path: name, Err: err}
}

// lookup resolves name inside the root with chroot semantics. It returns the directory
// that holds the final element, the element's name there, and its node (nil when it does
// not exist). With follow, a final symbolic link is followed, also when it dangles: then
// parent and base name where its target would be.
func (r *rootFS) lookup(name string, follow bool) (parent *node, base string, n *node, err error) {
	if strings.IndexByte(name, 0) >= 0 {
		return nil, "", nil, fmt.Errorf("%w: NUL byte in name", ErrInvalidEntry)
	}
	cur := strings.Trim(name, "/")
	start := r.a.root
	for hops := 0; ; hops++ {
		if hops > maxSymlinkHops {
			return nil, "", nil, errLoop
		}
		dir, b := "", cur
		if i := strings.LastIndexByte(cur, '/'); i >= 0 {
			dir, b = cur[:i], cur[i+1:]
		}
		if b == "" || b == "." || b == ".." {
			// The name ends in a directory step: resolve all of it as a directory.
			d, err := resolveFrom(r.a.root, start, cur, true, nil, r.a.look())
			if err != nil {
				return nil, "", nil, dirErr(err)
			}
			if d == nil {
				return nil, "", nil, fs.ErrNotExist
			}
			if d.parent == nil {
				return nil, ".", d, nil
			}
			return d.parent, d.name, d, nil
		}
		p, err := resolveFrom(r.a.root, start, dir, true, nil, r.a.look())
		if err != nil {
			return nil, "", nil, dirErr(err)
		}
		if p == nil {
			return nil, "", nil, fs.ErrNotExist
		}
		n := r.a.childOf(p, b, "")
		if n == nil || !follow || n.typ != tar.TypeSymlink {
			return p, b, n, nil
		}
		// Follow the final link inside the root: an absolute target starts again at the
		// root, a relative one at the link's directory.
		t := n.target()
		if strings.HasPrefix(t, "/") {
			start, cur = r.a.root, strings.Trim(t, "/")
		} else {
			start, cur = p, strings.TrimRight(t, "/")
		}
	}
}

// dirErr turns a resolveDir error into the error a file system call gives.
func dirErr(err error) error {
	var nd *notDirError
	switch {
	case errors.As(err, &nd):
		return syscall.ENOTDIR
	case errors.Is(err, syscall.ELOOP):
		return errLoop
	}
	return err
}

// existing resolves name to an existing node and its clean path.
func (r *rootFS) existing(op, name string, follow bool) (*node, string, error) {
	_, _, n, err := r.lookup(name, follow)
	if err == nil && n == nil {
		err = fs.ErrNotExist
	}
	if err != nil {
		return nil, "", pathErr(op, name, err)
	}
	return n, n.path(), nil
}

func (r *rootFS) stat(op, name string, follow bool) (fs.FileInfo, error) {
	n, p, err := r.existing(op, name, follow)
	if err != nil {
		return nil, err
	}
	e, err := r.t.Lstat(p)
	if err != nil {
		return nil, pathErr(op, name, err)
	}
	return fileInfo{name: n.name, e: e}, nil
}

func (r *rootFS) Lstat(name string) (fs.FileInfo, error) { return r.stat("lstat", name, false) }
func (r *rootFS) Stat(name string) (fs.FileInfo, error)  { return r.stat("stat", name, true) }

func (r *rootFS) ReadDir(name string) ([]fs.DirEntry, error) {
	d, p, err := r.existing("readdir", name, true)
	if err != nil {
		return nil, err
	}
	if !d.isDir() {
		return nil, pathErr("readdir", name, syscall.ENOTDIR)
	}
	names, err := r.a.childNames(d)
	if err != nil {
		return nil, pathErr("readdir", name, err)
	}
	out := make([]fs.DirEntry, 0, len(names))
	for _, n := range names {
		e, err := r.t.Lstat(path.Join(p, n))
		if err != nil {
			return nil, pathErr("readdir", name, err)
		}
		out = append(out, fs.FileInfoToDirEntry(fileInfo{name: n, e: e}))
	}
	return out, nil
}

func (r *rootFS) Readlink(name string) (string, error) {
	n, _, err := r.existing("readlink", name, false)
	if err != nil {
		return "", err
	}
	if n.typ != tar.TypeSymlink {
		return "", pathErr("readlink", name, syscall.EINVAL)
	}
	return n.target(), nil
}

func (r *rootFS) Open(name string) (fs.File, error) {
	n, p, err := r.existing("open", name, true)
	if err != nil {
		return nil, err
	}
	if n.typ != tar.TypeReg {
		if n.isDir() {
			return nil, pathErr("open", name, syscall.EISDIR)
		}
		return nil, pathErr("open", name, fmt.Errorf("%w: not a regular file", ErrInvalidEntry))
	}
	e, err := r.t.Lstat(p)
	if err != nil {
		return nil, pathErr("open", name, err)
	}
	rc, err := r.t.Open(p)
	if err != nil {
		return nil, pathErr("open", name, err)
	}
	return &file{ReadCloser: rc, info: fileInfo{name: n.name, e: e}}, nil
}

func (r *rootFS) WriteFile(name string, body io.Reader, perm fs.FileMode) error {
	parent, base, old, err := r.lookup(name, true)
	if err == nil && parent == nil {
		err = syscall.EISDIR // the root
	}
	if err != nil {
		return pathErr("write", name, err)
	}
	full := parent.join(base)
	e := &Entry{Path: full, Type: TypeReg, Mode: unixMode(perm), ModTime: r.now}
	if old != nil {
		switch {
		case old.isDir():
			return pathErr("write", name, syscall.EISDIR)
		case old.typ == tar.TypeReg:
			if e, err = r.t.Lstat(full); err != nil {
				return pathErr("write", name, err)
			}
			e.Type, e.Linkname = TypeReg, ""
		}
	}
	if err := checkName(base); err != nil {
		return pathErr("write", name, err)
	}
	body, size, done, err := sized(body, r.a.opts.tmpDir)
	if err != nil {
		return pathErr("write", name, err)
	}
	defer done()
	e.Size = size
	if old != nil {
		if err := r.a.sink.Whiteout(full); err != nil {
			return pathErr("write", name, err)
		}
		old.remove()
	}
	if err := r.a.sink.Entry(e, body); err != nil {
		return pathErr("write", name, err)
	}
	r.add(parent, base, tar.TypeReg, "")
	return nil
}

// add records a new entry in the tree of names.
func (r *rootFS) add(parent *node, base string, typ byte, target string) *node {
	return r.a.addChild(parent, base, typ, target, parent.join(base))
}

// checkName refuses a new element the output cannot hold.
func checkName(base string) error {
	if len(base) > nameMax {
		return fmt.Errorf("%w: name element longer than %d bytes", ErrInvalidEntry, nameMax)
	}
	return nil
}

// sized returns body with its length, spooling it to an unlinked temporary file in dir
// when it cannot tell. done releases the spool.
func sized(body io.Reader, dir string) (io.Reader, int64, func(), error) {
	nop := func() {}
	switch b := body.(type) {
	case interface{ Len() int }:
		return body, int64(b.Len()), nop, nil
	case *os.File:
		if st, err := b.Stat(); err == nil && st.Mode().IsRegular() {
			if off, err := b.Seek(0, io.SeekCurrent); err == nil {
				return io.LimitReader(b, st.Size()-off), st.Size() - off, nop, nil
			}
		}
	}
	f, err := os.CreateTemp(dir, "img2ext4-write-*")
	if err != nil {
		return nil, 0, nop, err
	}
	os.Remove(f.Name())
	n, err := io.Copy(f, body)
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return nil, 0, nop, err
	}
	return f, n, func() { f.Close() }, nil
}

func (r *rootFS) MkdirAll(name string, perm fs.FileMode) error {
	_, err := r.a.resolveDir(strings.Trim(name, "/"), true, func(parent *node, base string) (*node, error) {
		if err := checkName(base); err != nil {
			return nil, err
		}
		e := Entry{Type: TypeDir, Path: parent.join(base), Mode: unixMode(perm), ModTime: r.now}
		if err := r.a.sink.Entry(&e, nil); err != nil {
			return nil, err
		}
		return r.add(parent, base, tar.TypeDir, ""), nil
	})
	if err != nil {
		return pathErr("mkdir", name, dirErr(err))
	}
	return nil
}

// create resolves name for a new entry: its parent must exist and name must not.
func (r *rootFS) create(op, name string) (*node, string, error) {
	parent, base, old, err := r.lookup(name, false)
	switch {
	case err != nil:
		return nil, "", pathErr(op, name, err)
	case parent == nil || old != nil:
		return nil, "", pathErr(op, name, fs.ErrExist)
	}
	if err := checkName(base); err != nil {
		return nil, "", pathErr(op, name, err)
	}
	return parent, base, nil
}

func (r *rootFS) Symlink(target, name string) error {
	if target == "" || len(target) > pathMax || strings.IndexByte(target, 0) >= 0 {
		return pathErr("symlink", name, fmt.Errorf("%w: bad symlink target %q", ErrInvalidEntry, target))
	}
	parent, base, err := r.create("symlink", name)
	if err != nil {
		return err
	}
	e := Entry{Type: TypeSymlink, Path: parent.join(base), Mode: 0o777, Linkname: target, ModTime: r.now}
	if err := r.a.sink.Entry(&e, nil); err != nil {
		return pathErr("symlink", name, err)
	}
	r.add(parent, base, tar.TypeSymlink, target)
	return nil
}

func (r *rootFS) Link(oldname, newname string) error {
	old, oldPath, err := r.existing("link", oldname, false)
	if err != nil {
		return err
	}
	if old.typ != tar.TypeReg {
		return pathErr("link", oldname, fmt.Errorf("%w: a hard link must name a regular file", ErrInvalidEntry))
	}
	parent, base, err := r.create("link", newname)
	if err != nil {
		return err
	}
	e := Entry{Type: TypeLink, Path: parent.join(base), Linkname: oldPath}
	if err := r.a.sink.Entry(&e, nil); err != nil {
		return pathErr("link", newname, err)
	}
	r.add(parent, base, tar.TypeReg, "")
	return nil
}

func (r *rootFS) RemoveAll(name string) error {
	_, _, n, err := r.lookup(name, false)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && n == nil) {
		return nil
	}
	if err != nil {
		return pathErr("remove", name, err)
	}
	if n.parent == nil { // the root: empty it
		if err := r.a.sink.Opaque("."); err != nil {
			return pathErr("remove", name, err)
		}
		n.clearChildren()
		return nil
	}
	if err := r.a.sink.Whiteout(n.path()); err != nil {
		return pathErr("remove", name, err)
	}
	n.remove()
	return nil
}

// chmeta changes the metadata of name itself with fn.
func (r *rootFS) chmeta(op, name string, fn func(e *Entry)) error {
	_, p, err := r.existing(op, name, false)
	if err != nil {
		return err
	}
	e, err := r.t.Lstat(p)
	if err != nil {
		return pathErr(op, name, err)
	}
	fn(e)
	if err := r.t.SetMeta(e); err != nil {
		return pathErr(op, name, err)
	}
	return nil
}

func (r *rootFS) Chmod(name string, mode fs.FileMode) error {
	return r.chmeta("chmod", name, func(e *Entry) { e.Mode = unixMode(mode) })
}

func (r *rootFS) Chown(name string, uid, gid int) error {
	if uid < 0 || gid < 0 || uint64(uid) > 1<<32-1 || uint64(gid) > 1<<32-1 {
		return pathErr("chown", name, fmt.Errorf("%w: owner %d:%d out of range", ErrInvalidEntry, uid, gid))
	}
	return r.chmeta("chown", name, func(e *Entry) { e.UID, e.GID = uid, gid })
}

func (r *rootFS) Chtimes(name string, atime, mtime time.Time) error {
	return r.chmeta("chtimes", name, func(e *Entry) { e.AccessTime, e.ModTime = atime, mtime })
}

func (r *rootFS) Setxattr(name, attr string, value []byte) error {
	if attr == "" || len(attr) > xattrNameMax || strings.IndexByte(attr, 0) >= 0 {
		return pathErr("setxattr", name, fmt.Errorf("%w: bad xattr name %q", ErrInvalidEntry, attr))
	}
	return r.chmeta("setxattr", name, func(e *Entry) { e.setXattr(attr, slices.Clone(value)) })
}

func (r *rootFS) Removexattr(name, attr string) error {
	return r.chmeta("removexattr", name, func(e *Entry) { e.removeXattr(attr) })
}

func (r *rootFS) EvalSymlinks(name string) (string, error) {
	_, p, err := r.existing("evalsymlinks", name, true)
	return p, err
}

// fileInfo describes an entry of a RootFS; Sys returns its *Entry.
type fileInfo struct {
	name string
	e    *Entry
}

func (fi fileInfo) Name() string { return fi.name }
func (fi fileInfo) Size() int64 {
	if fi.e.Type == TypeSymlink {
		return int64(len(fi.e.Linkname))
	}
	return fi.e.Size
}
func (fi fileInfo) Mode() fs.FileMode  { return fi.e.FileMode() }
func (fi fileInfo) ModTime() time.Time { return fi.e.ModTime }
func (fi fileInfo) IsDir() bool        { return fi.e.Type == TypeDir }
func (fi fileInfo) Sys() any           { return fi.e }

// file is a regular file of a RootFS open for reading.
type file struct {
	io.ReadCloser
	info fileInfo
}

func (f *file) Stat() (fs.FileInfo, error) { return f.info, nil }
