package layerapply

import (
	"archive/tar"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
)

// Tar is a [Sink] that writes the merged image as one flattened tar.
//
// Layers can delete what earlier layers wrote, so nothing is emitted until [Tar.Close]:
// meanwhile Tar keeps each entry's header in memory and spools regular-file bodies to an
// unlinked temporary file. Close writes the tree depth first with names in byte order, a
// hard-linked file's first name carrying the body and the others linking to it, so the same
// image always gives the same bytes. Times other than the modification time are dropped.
type Tar struct {
	w      io.Writer
	spool  *os.File
	off    int64
	root   *tarNode
	err    error
	closed bool
	// rootSet records that a layer gave the root directory's metadata, which Close then
	// writes as "./"; otherwise the tar has no entry for the root, as docker export does.
	rootSet bool
}

type tarInode struct {
	e     Entry  // Path unused: a hard-linked inode has several
	off   int64  // body offset in the spool
	first string // name written first, set during Close
}

type tarNode struct {
	ino      *tarInode
	children map[string]*tarNode
}

// NewTar returns a sink that writes a flattened tar to w at Close. Bodies are spooled in
// tmpDir ("" means the system default); the caller closes w.
func NewTar(w io.Writer, tmpDir string) (*Tar, error) {
	f, err := os.CreateTemp(tmpDir, "img2ext4-spool-*")
	if err != nil {
		return nil, fmt.Errorf("create tar spool: %w", err)
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, fmt.Errorf("unlink tar spool: %w", err)
	}
	root := &tarNode{ino: &tarInode{e: Entry{Type: TypeDir, Mode: 0o755}}}
	return &Tar{w: w, spool: f, root: root}, nil
}

func (t *Tar) lookup(name string) (parent *tarNode, base string, n *tarNode) {
	if name == "." {
		return nil, ".", t.root
	}
	dir, base := path.Split(name)
	parent = t.root
	if dir != "" {
		for _, elem := range strings.Split(strings.TrimSuffix(dir, "/"), "/") {
			if parent = parent.children[elem]; parent == nil {
				return nil, base, nil
			}
		}
	}
	return parent, base, parent.children[base]
}

func (t *Tar) fail(op, name string, err error) error {
	err = fmt.Errorf("tar %s %s: %w", op, name, err)
	if t.err == nil {
		t.err = err
	}
	return err
}

// Entry implements [Sink].
func (t *Tar) Entry(e *Entry, body io.Reader) error {
	if t.err != nil {
		return t.err
	}
	parent, base, old := t.lookup(e.Path)
	if e.Type == TypeDir && old != nil {
		old.ino.e = *e.Clone()
		if old == t.root {
			t.rootSet = true
		}
		return nil
	}
	if parent == nil {
		return t.fail("create", e.Path, fmt.Errorf("parent directory missing"))
	}
	n := &tarNode{}
	switch e.Type {
	case TypeLink:
		_, _, target := t.lookup(e.Linkname)
		if target == nil {
			return t.fail("link", e.Path, fmt.Errorf("target %s missing", e.Linkname))
		}
		n.ino = target.ino
	case TypeReg:
		n.ino = &tarInode{e: *e.Clone(), off: t.off}
		if e.Size > 0 {
			bp := bufPool.Get().(*[]byte)
			w := io.NewOffsetWriter(t.spool, t.off)
			c, err := io.CopyBuffer(w, io.LimitReader(body, e.Size), *bp)
			bufPool.Put(bp)
			if err != nil {
				return t.fail("spool", e.Path, err)
			}
			if c != e.Size {
				return t.fail("spool", e.Path, io.ErrUnexpectedEOF)
			}
			t.off += c
		}
	default:
		n.ino = &tarInode{e: *e.Clone()}
	}
	if parent.children == nil {
		parent.children = make(map[string]*tarNode)
	}
	parent.children[base] = n
	return nil
}

// header returns the tar header of an entry: PAX, with its extended attributes as
// SCHILY.xattr records and only its modification time.
func header(name string, e *Entry) tar.Header {
	h := tar.Header{
		Typeflag: byte(e.Type),
		Name:     name,
		Linkname: e.Linkname,
		Size:     e.Size,
		Mode:     int64(e.Mode),
		Uid:      e.UID,
		Gid:      e.GID,
		ModTime:  e.ModTime,
		Devmajor: int64(e.Devmajor),
		Devminor: int64(e.Devminor),
		Format:   tar.FormatPAX,
	}
	if len(e.Xattrs) > 0 {
		h.PAXRecords = make(map[string]string, len(e.Xattrs))
		for _, x := range e.Xattrs {
			h.PAXRecords[XattrPrefix+x.Name] = string(x.Value)
		}
		addTextACLs(h.PAXRecords)
	}
	return h
}

// Whiteout implements [Sink].
func (t *Tar) Whiteout(name string) error {
	if t.err != nil {
		return t.err
	}
	parent, base, n := t.lookup(name)
	if n == nil || parent == nil {
		return t.fail("remove", name, fmt.Errorf("no such entry"))
	}
	delete(parent.children, base)
	return nil
}

// Opaque implements [Sink].
func (t *Tar) Opaque(dir string) error {
	if t.err != nil {
		return t.err
	}
	_, _, n := t.lookup(dir)
	if n == nil {
		return t.fail("opaque", dir, fmt.Errorf("no such directory"))
	}
	n.children = nil
	return nil
}

// Close writes the flattened tar and releases the spool. It does not close the writer.
// Calling it again does nothing.
func (t *Tar) Close() error {
	if t.closed {
		return t.err
	}
	t.closed = true
	defer t.spool.Close()
	if t.err != nil {
		return t.err
	}
	tw := tar.NewWriter(t.w)
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	if t.rootSet {
		h := header("./", &t.root.ino.e)
		if err := tw.WriteHeader(&h); err != nil {
			return fmt.Errorf("tar write ./: %w", err)
		}
	}
	if err := t.write(tw, "", t.root, *bp); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("tar close: %w", err)
	}
	return nil
}

func (t *Tar) write(tw *tar.Writer, prefix string, dir *tarNode, buf []byte) error {
	names := make([]string, 0, len(dir.children))
	for n := range dir.children {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, base := range names {
		n := dir.children[base]
		name := prefix + base
		h := header(name, &n.ino.e)
		switch {
		case h.Typeflag == tar.TypeDir:
			h.Name += "/"
		case n.ino.first != "":
			h = tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: n.ino.first,
				ModTime: h.ModTime, Mode: h.Mode, Uid: h.Uid, Gid: h.Gid, Format: tar.FormatPAX}
		default:
			n.ino.first = name
		}
		if err := tw.WriteHeader(&h); err != nil {
			return fmt.Errorf("tar write %s: %w", name, err)
		}
		if h.Typeflag == tar.TypeReg && h.Size > 0 {
			if _, err := io.CopyBuffer(tw, io.NewSectionReader(t.spool, n.ino.off, h.Size), buf); err != nil {
				return fmt.Errorf("tar write %s: %w", name, err)
			}
		}
		if h.Typeflag == tar.TypeDir {
			if err := t.write(tw, name+"/", n, buf); err != nil {
				return err
			}
		}
	}
	return nil
}

// Abort releases the spool without writing anything, after a failed Apply.
func (t *Tar) Abort() error {
	if t.closed {
		return nil
	}
	t.closed = true
	return t.spool.Close()
}

var _ Tree = (*Tar)(nil)

// Lstat implements [Tree].
func (t *Tar) Lstat(name string) (*Entry, error) {
	if t.err != nil {
		return nil, t.err
	}
	_, _, n := t.lookup(name)
	if n == nil {
		return nil, t.fail("lstat", name, fs.ErrNotExist)
	}
	e := n.ino.e.Clone()
	e.Path = name
	return e, nil
}

// Open implements [Tree].
func (t *Tar) Open(name string) (io.ReadCloser, error) {
	if t.err != nil {
		return nil, t.err
	}
	_, _, n := t.lookup(name)
	if n == nil || n.ino.e.Type != TypeReg {
		return nil, t.fail("open", name, fs.ErrNotExist)
	}
	return io.NopCloser(io.NewSectionReader(t.spool, n.ino.off, n.ino.e.Size)), nil
}

// SetMeta implements [Tree].
func (t *Tar) SetMeta(e *Entry) error {
	if t.err != nil {
		return t.err
	}
	_, _, n := t.lookup(e.Path)
	if n == nil {
		return t.fail("chmeta", e.Path, fs.ErrNotExist)
	}
	old := &n.ino.e
	c := e.Clone()
	old.Mode, old.UID, old.GID = c.Mode, c.UID, c.GID
	old.ModTime, old.AccessTime, old.ChangeTime = c.ModTime, c.AccessTime, c.ChangeTime
	old.Xattrs = c.Xattrs
	if n == t.root {
		t.rootSet = true
	}
	return nil
}

// XattrPrefix starts the PAX record keys that carry extended attributes in a tar, the
// form [Tar] writes them in.
const XattrPrefix = "SCHILY.xattr."
