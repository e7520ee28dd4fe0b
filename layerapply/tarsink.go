package layerapply

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
)

// Tar is a [Sink] that writes the merged image as one flattened tar.
//
// Layers can delete what earlier layers wrote, so nothing is emitted until [Tar.Close]:
// meanwhile Tar keeps each entry's header in memory and spools regular-file bodies to an
// unlinked temporary file. Close writes the tree depth first with names in byte order, a
// hard-linked file's first name carrying the body and the others linking to it, so the same
// image always gives the same bytes. Times other than the modification time are dropped.
//
// A file that a layer stored sparse ([Entry.Sparse]) is written as a GNU PAX sparse entry
// of format 1.0, its holes left out, so that GNU tar, bsdtar and archive/tar (and Apply)
// read it back as the same sparse file; a file stored whole stays whole, zeros included,
// even where they fill whole blocks: the tar keeps the layers' choice.
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
		if e.Sparse != nil {
			// spool the data segments one after another; Close writes the map
			bp := bufPool.Get().(*[]byte)
			err := eachSegment(e, body, func(_ int64, r io.Reader, n int64) error {
				c, err := io.CopyBuffer(io.NewOffsetWriter(t.spool, t.off), r, *bp)
				t.off += c
				if err == nil && c != n {
					err = io.ErrUnexpectedEOF
				}
				return err
			})
			bufPool.Put(bp)
			if err != nil {
				return t.fail("spool", e.Path, err)
			}
		} else if e.Size > 0 {
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
		if h.Typeflag == tar.TypeReg && n.ino.e.Sparse != nil {
			if err := t.writeSparse(tw, name, &n.ino.e, n.ino.off, buf); err != nil {
				return fmt.Errorf("tar write %s: %w", name, err)
			}
			continue
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
	if e := &n.ino.e; e.Sparse != nil {
		return io.NopCloser(&spooledSparse{ra: t.spool, base: n.ino.off, segs: e.Sparse, size: e.Size}), nil
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

// writeSparse writes the sparse file e, whose segments' data lie one after another in the
// spool from off, as a GNU PAX sparse entry of format 1.0: a PAX header with the records
// GNU.sparse.major=1, GNU.sparse.minor=0, GNU.sparse.name (the real name) and
// GNU.sparse.realsize, then a header named GNUSparseFile.0/BASE whose data is the map (the
// count, then each segment's offset and length, as decimal lines padded to a block)
// followed by the segments' data. archive/tar's Writer drops GNU.sparse records, so these
// two headers are encoded here; the other records are the ones the Writer would give the
// file, read back from its encoding of a dense header.
func (t *Tar) writeSparse(tw *tar.Writer, name string, e *Entry, off int64, buf []byte) error {
	segs := e.Sparse
	var data int64
	for _, s := range segs {
		data += s.Length
	}
	if k := len(segs); k == 0 || segs[k-1].End() < e.Size {
		// GNU tar ends a map with the file's end when the file ends in a hole.
		segs = append(segs[:k:k], Segment{Offset: e.Size})
	}
	m := strconv.Itoa(len(segs)) + "\n"
	for _, s := range segs {
		m += strconv.FormatInt(s.Offset, 10) + "\n" + strconv.FormatInt(s.Length, 10) + "\n"
	}
	mapLen := int64(len(m)+511) &^ 511
	physical := mapLen + data

	// The records archive/tar would write for the file, dense and of this size.
	h := header(name, e)
	h.Size = physical
	var enc bytes.Buffer
	if err := tar.NewWriter(&enc).WriteHeader(&h); err != nil {
		return err
	}
	back, err := tar.NewReader(&enc).Next()
	if err != nil {
		return err
	}
	recs := make(map[string]string, len(back.PAXRecords)+4)
	for k, v := range back.PAXRecords {
		recs[k] = v
	}
	delete(recs, "path") // GNU.sparse.name carries the name
	recs["GNU.sparse.major"] = "1"
	recs["GNU.sparse.minor"] = "0"
	recs["GNU.sparse.name"] = name
	recs["GNU.sparse.realsize"] = strconv.FormatInt(e.Size, 10)
	keys := make([]string, 0, len(recs))
	for k := range recs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var pax []byte
	for _, k := range keys {
		pax = appendPAXRecord(pax, k, recs[k])
	}

	if err := tw.Flush(); err != nil {
		return err
	}
	base := path.Base(name)
	if len(base) > 80 {
		base = base[:80]
	}
	mtime := max(e.ModTime.Unix(), 0)
	var blk [512]byte
	ustarBlock(&blk, "PaxHeaders.0/"+base, 0o644, 0, 0, int64(len(pax)), mtime, tar.TypeXHeader)
	if _, err := t.w.Write(blk[:]); err != nil {
		return err
	}
	if _, err := t.w.Write(append(pax, make([]byte, padding(int64(len(pax))))...)); err != nil {
		return err
	}
	ustarBlock(&blk, "GNUSparseFile.0/"+base, int64(e.Mode), e.UID, e.GID, physical, mtime, tar.TypeReg)
	if _, err := t.w.Write(blk[:]); err != nil {
		return err
	}
	if _, err := t.w.Write(append([]byte(m), make([]byte, padding(int64(len(m))))...)); err != nil {
		return err
	}
	if _, err := io.CopyBuffer(t.w, io.NewSectionReader(t.spool, off, data), buf); err != nil {
		return err
	}
	_, err = t.w.Write(make([]byte, padding(data)))
	return err
}

// padding is the number of zeros that fill n bytes up to a whole tar block.
func padding(n int64) int64 { return -n & 511 }

// appendPAXRecord appends the PAX record "LEN KEY=VALUE\n", LEN counting the whole
// record, as archive/tar computes it.
func appendPAXRecord(b []byte, k, v string) []byte {
	size := len(k) + len(v) + 3 // ' ', '=', '\n'
	size += len(strconv.Itoa(size))
	if n := len(strconv.Itoa(size)) + len(k) + len(v) + 3; n != size {
		size = n // the length grew a digit by counting itself
	}
	return fmt.Appendf(b, "%d %s=%s\n", size, k, v)
}

// ustarBlock encodes a ustar header. Numbers too large for their field are stored as 0: the
// PAX records before the header give them.
func ustarBlock(blk *[512]byte, name string, mode int64, uid, gid int, size, mtime int64, typ byte) {
	clear(blk[:])
	copy(blk[0:100], name)
	octal := func(b []byte, v int64) {
		if v < 0 || v >= 1<<(3*(len(b)-1)) {
			v = 0
		}
		copy(b, fmt.Sprintf("%0*o", len(b)-1, v))
	}
	octal(blk[100:108], mode&0o7777)
	octal(blk[108:116], int64(uid))
	octal(blk[116:124], int64(gid))
	octal(blk[124:136], size)
	octal(blk[136:148], mtime)
	blk[156] = typ
	copy(blk[257:265], "ustar\x0000")
	copy(blk[148:156], "        ")
	var sum int64
	for _, c := range blk {
		sum += int64(c)
	}
	copy(blk[148:156], fmt.Sprintf("%06o\x00 ", sum))
}

// spooledSparse reads a sparse file kept in the tar sink's spool: its segments' data lie
// one after another from base; holes read as zeros.
type spooledSparse struct {
	ra   io.ReaderAt
	base int64 // spool offset of the current segment's data, past what was read of it
	segs []Segment
	size int64
	pos  int64
}

func (r *spooledSparse) Read(p []byte) (int, error) {
	if r.pos >= r.size {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), r.size-r.pos)]
	for len(r.segs) > 0 && r.pos >= r.segs[0].End() {
		r.segs = r.segs[1:]
	}
	if len(r.segs) > 0 && r.pos >= r.segs[0].Offset {
		n, err := r.ra.ReadAt(p[:min(int64(len(p)), r.segs[0].End()-r.pos)], r.base)
		r.base += int64(n)
		r.pos += int64(n)
		if err == io.EOF && n > 0 {
			err = nil
		}
		return n, err
	}
	next := r.size
	if len(r.segs) > 0 {
		next = r.segs[0].Offset
	}
	n := min(int64(len(p)), next-r.pos)
	clear(p[:n])
	r.pos += n
	return int(n), nil
}
