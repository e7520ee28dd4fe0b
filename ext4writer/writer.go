package ext4writer

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"time"

	"github.com/img2ext4/img2ext4/ext4writer/internal/disk"
	"github.com/img2ext4/img2ext4/internal/copystat"
)

const (
	blockSize      = disk.BlockSize
	blocksPerGroup = disk.BlocksPerGroup
	maxLinks       = 65000
	maxFileSize    = int64(1<<32-1) * blockSize // logical blocks are 32 bits
	maxSymlink     = blockSize - 1
	maxNameLen     = 255
)

// File describes one entry passed to [Writer.Create].
type File struct {
	// Mode holds the type bits (none for a regular file, or one of
	// fs.ModeDir, fs.ModeSymlink, fs.ModeDevice, fs.ModeDevice|
	// fs.ModeCharDevice, fs.ModeNamedPipe, fs.ModeSocket), the
	// permission bits and fs.ModeSetuid, fs.ModeSetgid, fs.ModeSticky.
	Mode fs.FileMode
	// UID and GID are the owner, full 32 bits.
	UID, GID uint32
	// Atime, Mtime, Ctime and Crtime are stored with nanoseconds from
	// 1901-12-13 to 2446-05-10; values outside are clamped. The zero
	// Time stands for the Unix epoch.
	Atime, Mtime, Ctime, Crtime time.Time
	// Size is the length of a regular file's body, which must follow
	// through [Writer.Write] or [Writer.ReadFrom]. Ignored for other types.
	Size int64
	// Linkname is a symbolic link's target (1 to 4095 bytes).
	Linkname string
	// Devmajor and Devminor are a device's numbers.
	Devmajor, Devminor uint32
	// Xattrs are extended attributes, keyed by full name ("user.foo");
	// the namespaces are user., trusted. and security., plus the POSIX
	// ACLs. They must fit in the inode and one 4 KiB block. POSIX ACLs (system.posix_acl_access, system.posix_acl_default) are
	// given in the Linux VFS format (version 2) and stored in ext4's.
	Xattrs map[string][]byte
}

type xattr struct {
	index uint8
	name  string // without the prefix
	value []byte
}

// inode is the in-memory state of one file. It stays small: no file data.
type inode struct {
	mode                        uint16
	nlink                       uint32
	uid, gid                    uint32
	atime, ctime, mtime, crtime [2]uint32
	size                        int64
	major, minor                uint32
	link                        string
	xattrs                      []xattr
	ext                         []disk.Extent // data (or, at Close, directory) extents
	dir                         *dirInfo
	num                         uint32 // inode number given at creation (see Writer.number)

	// set while laying out
	ino   uint32
	tree  []uint64 // extent tree blocks
	xblk  uint64   // external xattr block
	xnext int      // index of the first xattr stored in the block
}

type dirInfo struct {
	parent   *inode
	children map[string]*inode
	nsub     uint32
	// layout is set while laying out and kept until children changes (it depends on the
	// names and the inodes they point to, on whether the directory is lost+found, which
	// no directory becomes or stops being, and on options fixed by New; not on the
	// image's geometry or the inodes' numbers, read when it is written): whatever adds or
	// removes a child sets it to nil. Close's writeMeta drops its entry list once
	// written; a closed Writer lays out nothing again.
	layout *dirLayout
}

// Writer writes an ext4 filesystem image in one pass. File bodies go
// straight to their final blocks; all metadata is written by Close.
// A Writer is not safe for concurrent use.
type Writer struct {
	f      io.WriterAt
	o      *options
	err    error // sticky
	closed bool
	size   int64 // final size, after Close
	stats  Stats // after Close

	planFree uint64 // free blocks as the sizing policy counted them (tests compare)

	// overflow is set when the content outgrew a fixed size: entries are
	// still taken, without writing, so that Close can tell the size that
	// would fit.
	overflow bool

	dirty    runSet // freed blocks that still hold data
	zeroMode int    // how freed blocks are zeroed (see zeroBlocks)
	zeros    []byte // a buffer of zeros, when they are written
	hiWater  int64  // end of the furthest write

	root    *inode
	ninodes uint64 // live inodes besides the root
	nextNum uint64 // the next inode number to give
	alloc   allocator
	arenas  arenas // inodes, names and first extents of entries

	cur       *inode
	curName   string
	remaining int64
	lblk      uint64
	blk       []byte
	blkN      int
	buf       []byte

	// write combining: data for blocks pendBlk.. not yet written
	pend    []byte
	pendBlk uint64
}

const pendMax = 1 << 20

// writeData writes whole blocks of file data at block blk, combining
// physically adjacent small writes into one call.
func (w *Writer) writeData(p []byte, blk uint64) error {
	// p may already sit at the end of the pending data: ReadFrom reads bodies there, so
	// that their bytes reach pwrite with no copy after the reader's own.
	inPlace := len(p) > 0 && len(w.pend) < cap(w.pend) && &w.pend[:len(w.pend)+1][len(w.pend)] == &p[0]
	if len(w.pend) > 0 && w.pendBlk+uint64(len(w.pend)/blockSize) == blk && len(w.pend)+len(p) <= pendMax {
		if inPlace {
			w.pend = w.pend[:len(w.pend)+len(p)]
		} else {
			w.pend = append(w.pend, p...)
			copystat.Add(len(p))
		}
		return nil
	}
	if err := w.flush(); err != nil {
		return err
	}
	if inPlace && len(w.pend) == 0 && &w.pend[:1][0] == &p[0] {
		w.pend, w.pendBlk = w.pend[:len(p)], blk // already where it would be copied
		return nil
	}
	if len(p) >= pendMax/2 || inPlace {
		return w.writeAt(p, blk)
	}
	if w.pend == nil {
		w.pend = make([]byte, 0, pendMax)
	}
	w.pend = append(w.pend, p...)
	copystat.Add(len(p))
	w.pendBlk = blk
	return nil
}

// flush writes out combined data.
func (w *Writer) flush() error {
	if len(w.pend) == 0 {
		return nil
	}
	err := w.writeAt(w.pend, w.pendBlk)
	w.pend = w.pend[:0]
	return err
}

var _ io.ReaderFrom = (*Writer)(nil)
var _ io.Writer = (*Writer)(nil)

var zeroBlock = make([]byte, blockSize)

// New returns a Writer that writes an ext4 image to f. f should read
// back zeros where nothing was written (a new, empty file or block
// device range); the writer leaves unused space as holes. New writes
// nothing until bodies arrive.
func New(f io.WriterAt, opts ...Option) (*Writer, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
	descSize := uint64(64)
	if o.legacy {
		descSize = 32
	}
	w := &Writer{
		f:     f,
		o:     o,
		alloc: newAllocator(uint64(o.maxSize/blockSize), descSize),
		blk:   make([]byte, blockSize),
	}
	if o.size > 0 {
		w.alloc.limit = uint64(o.size / blockSize)
	}
	w.root = &inode{mode: disk.SIFDIR | 0o755, nlink: 2, dir: &dirInfo{children: map[string]*inode{}}, num: disk.RootIno}
	w.root.dir.parent = w.root
	w.nextNum = disk.FirstIno
	lf := &inode{mode: disk.SIFDIR | 0o700, nlink: 2, dir: &dirInfo{parent: w.root, children: map[string]*inode{}}, num: w.newNum()}
	w.root.dir.children["lost+found"] = lf
	w.root.dir.nsub++
	w.ninodes++
	return w, nil
}

func (w *Writer) check(op, name string) error {
	if w.closed {
		return opErr(op, name, ErrClosed)
	}
	if w.err != nil {
		return w.err
	}
	if w.remaining > 0 {
		w.err = opErr(op, w.curName, fmt.Errorf("%w: %d bytes", ErrShortWrite, w.remaining))
		return w.err
	}
	return nil
}

// splitPath validates name and returns the parent directory and base name.
func (w *Writer) splitPath(name string) (*inode, string, error) {
	if !validName(name) {
		return nil, "", ErrInvalidName
	}
	dir := w.root
	for {
		i := strings.IndexByte(name, '/')
		if i < 0 {
			break
		}
		elem := name[:i]
		if len(elem) > maxNameLen {
			return nil, "", ErrInvalidName
		}
		c := dir.dir.children[elem]
		if c == nil {
			return nil, "", ErrNotExist
		}
		if c.dir == nil {
			return nil, "", ErrNotDir
		}
		dir = c
		name = name[i+1:]
	}
	if len(name) > maxNameLen {
		return nil, "", ErrInvalidName
	}
	return dir, name, nil
}

// validName follows the rules of [fs.ValidPath] (unrooted, slash
// separated, no empty, "." or ".." elements) but, like Linux, accepts any
// bytes other than NUL, including invalid UTF-8.
func validName(name string) bool {
	if name == "" || name == "." || strings.IndexByte(name, 0) >= 0 {
		return false
	}
	for name != "" {
		elem, rest, found := strings.Cut(name, "/")
		if elem == "" || elem == "." || elem == ".." || len(elem) > maxNameLen || (found && rest == "") {
			return false
		}
		name = rest
	}
	return true
}

func encodeMode(m fs.FileMode) (uint16, error) {
	mode := uint16(m.Perm())
	if m&fs.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	switch m.Type() {
	case 0:
		mode |= disk.SIFREG
	case fs.ModeDir:
		mode |= disk.SIFDIR
	case fs.ModeSymlink:
		mode |= disk.SIFLNK
	case fs.ModeNamedPipe:
		mode |= disk.SIFIFO
	case fs.ModeSocket:
		mode |= disk.SIFSOCK
	case fs.ModeDevice:
		mode |= disk.SIFBLK
	case fs.ModeDevice | fs.ModeCharDevice:
		mode |= disk.SIFCHR
	default:
		return 0, fmt.Errorf("%w: unsupported mode %v", ErrInvalidFile, m)
	}
	return mode, nil
}

func encTime(t time.Time) [2]uint32 {
	if t.IsZero() {
		return [2]uint32{}
	}
	lo, ex := disk.EncodeTime(t.Unix(), int64(t.Nanosecond()))
	return [2]uint32{lo, ex}
}

// setMeta copies f's metadata into in (not the type).
func (in *inode) setMeta(f *File, mode uint16) error {
	xs, err := convertXattrs(f.Xattrs)
	if err != nil {
		return err
	}
	if _, err := splitXattrs(xs); err != nil {
		return err
	}
	in.mode = mode
	in.uid, in.gid = f.UID, f.GID
	in.atime, in.mtime, in.ctime, in.crtime = encTime(f.Atime), encTime(f.Mtime), encTime(f.Ctime), encTime(f.Crtime)
	in.xattrs = xs
	return nil
}

// Create adds name, described by f, to the image. name is a slash
// separated path relative to the root (see [io/fs.ValidPath]); its parent
// directory must exist. "." updates the root directory's metadata.
// Symbolic links are not followed. An existing directory given again as a
// directory keeps its children and takes the new metadata; any other
// existing entry is removed first (see [Writer.Remove]). A regular file's
// body of f.Size bytes must follow through Write or ReadFrom before the
// next call to Create, Link, Remove or Close.
func (w *Writer) Create(name string, f *File) error {
	if err := w.check("create", name); err != nil {
		return err
	}
	if f == nil {
		return opErr("create", name, fmt.Errorf("%w: nil File", ErrInvalidFile))
	}
	mode, err := encodeMode(f.Mode)
	if err != nil {
		return opErr("create", name, err)
	}
	if name == "." {
		if mode&disk.SIFMT != disk.SIFDIR {
			return opErr("create", name, ErrIsDir)
		}
		if err := w.root.setMeta(f, mode); err != nil {
			return opErr("create", name, err)
		}
		return nil
	}
	parent, base, err := w.splitPath(name)
	if err != nil {
		return opErr("create", name, err)
	}
	// The new inode takes its slot once it is known to go into the tree.
	nw := inode{nlink: 1}
	switch mode & disk.SIFMT {
	case disk.SIFREG:
		if f.Size < 0 || f.Size > maxFileSize {
			return opErr("create", name, fmt.Errorf("%w: size %d", ErrInvalidFile, f.Size))
		}
		nw.size = f.Size
	case disk.SIFLNK:
		if len(f.Linkname) == 0 || len(f.Linkname) > maxSymlink || strings.IndexByte(f.Linkname, 0) >= 0 {
			return opErr("create", name, fmt.Errorf("%w: symlink target length %d", ErrInvalidFile, len(f.Linkname)))
		}
		nw.link = f.Linkname
		nw.size = int64(len(f.Linkname))
	case disk.SIFCHR, disk.SIFBLK:
		if f.Devmajor >= 1<<20 || f.Devminor >= 1<<20 {
			return opErr("create", name, fmt.Errorf("%w: device %d:%d", ErrInvalidFile, f.Devmajor, f.Devminor))
		}
		nw.major, nw.minor = f.Devmajor, f.Devminor
	}
	if err := nw.setMeta(f, mode); err != nil {
		return opErr("create", name, err)
	}
	if old := parent.dir.children[base]; old != nil {
		if old.dir != nil && mode&disk.SIFMT == disk.SIFDIR {
			old.mode, old.uid, old.gid = nw.mode, nw.uid, nw.gid
			old.atime, old.mtime, old.ctime, old.crtime = nw.atime, nw.mtime, nw.ctime, nw.crtime
			old.xattrs = nw.xattrs
			return nil
		}
		w.unlink(parent, base)
	}
	in := w.arenas.inode()
	*in = nw
	if mode&disk.SIFMT == disk.SIFDIR {
		in.nlink = 2
		in.dir = &dirInfo{parent: parent, children: map[string]*inode{}}
		parent.dir.nsub++
	}
	if in.link != "" && len(in.link) >= 60 {
		if err := w.writeSymlink(in); err != nil {
			w.err = opErr("create", name, err)
			if se, ok := err.(*SizeError); ok {
				se.Name = name
				w.err = se
			}
			return w.err
		}
	}
	in.num = w.newNum()
	parent.dir.children[w.arenas.name(base)] = in
	parent.dir.layout = nil
	w.ninodes++
	if mode&disk.SIFMT == disk.SIFREG && in.size > 0 {
		w.cur, w.curName, w.remaining, w.lblk, w.blkN = in, name, in.size, 0, 0
	}
	return nil
}

func (w *Writer) writeSymlink(in *inode) error {
	start, _, ok := w.allocData(1)
	if !ok {
		return w.sizeErr("create")
	}
	b := w.blk
	clear(b)
	copy(b, in.link)
	if err := w.writeData(b, start); err != nil {
		return err
	}
	in.ext = append(in.ext, disk.Extent{Logical: 0, Len: 1, Start: start})
	return nil
}

// allocData allocates up to n contiguous blocks for file data. When a
// fixed size is exhausted, it switches to overflow mode.
func (w *Writer) allocData(n uint64) (start, cnt uint64, ok bool) {
	w.alloc.cursorOnly = w.keepHoles()
	start, cnt, ok = w.alloc.alloc(n)
	if !ok && w.alloc.cursorOnly {
		w.alloc.cursorOnly = false // the cursor is at the fixed size's end
		start, cnt, ok = w.alloc.alloc(n)
	}
	w.alloc.cursorOnly = false
	if !ok && w.o.size > 0 && !w.overflow {
		if err := w.flush(); err != nil {
			return 0, 0, false
		}
		w.overflow = true
		w.alloc.limit = maxMaxSize / blockSize
		start, cnt, ok = w.alloc.alloc(n)
	}
	if ok && len(w.dirty) > 0 {
		w.dirty.remove(run{start, cnt}) // the new body overwrites them whole
	}
	return start, cnt, ok
}

// keepHoles reports whether file data should leave the blocks that
// removed files freed alone and go to the cursor. Close lays out its
// metadata in those blocks first, and what it leaves is free space, so
// keeping them costs no size while they are no more than the journal, the
// inode tables and the free space an image of what is written so far
// gets anyway; then the layout at Close is the same whatever is written
// after the removals, up to where its metadata reaches. Beyond that,
// bodies fill them as before. In an image of fixed size, bodies fill them
// once the cursor reaches its end.
func (w *Writer) keepHoles() bool {
	a := &w.alloc
	if a.nfree == 0 {
		return false
	}
	if w.o.size > 0 {
		return true
	}
	t := a.cursor
	budget := w.o.wantAvailable(t - a.nfree)
	if w.o.journal {
		budget += max(disk.JournalBlocks(t), 1024)
	}
	// inode tables at the inode ratio, as fit counts them at least
	budget += (w.inodeRoom() + uint64(w.o.freeInodes)) * disk.InodeSize / blockSize
	return a.nfree <= budget
}

func (w *Writer) sizeErr(op string) *SizeError {
	return &SizeError{Op: op, Name: w.curName, Limit: int64(w.alloc.limit) * blockSize}
}

// unlink removes base from parent, dropping the inode when its last link goes.
func (w *Writer) unlink(parent *inode, base string) {
	// freed blocks may be reused: never leave their old data pending
	if err := w.flush(); err != nil && w.err == nil {
		w.err = opErr("write", w.curName, err)
	}
	in := parent.dir.children[base]
	delete(parent.dir.children, base)
	parent.dir.layout = nil
	if in.dir != nil {
		parent.dir.nsub--
		for name := range in.dir.children {
			w.unlink(in, name)
		}
		in.nlink = 0
	} else {
		in.nlink--
	}
	if in.nlink == 0 {
		w.ninodes--
		// A directory's extents only exist in a layout planned by MinSize,
		// on a copy of the allocator: they are not the writer's to free.
		if in.dir == nil {
			w.freeData(in.ext)
		}
		in.ext = nil
		in.xattrs = nil
	}
}

// freeData gives the blocks of a removed file back to the allocator and
// marks them dirty: Close zeroes (or punches) those that no later file
// overwrote, so that no deleted data stays in the image.
func (w *Writer) freeData(ext []disk.Extent) {
	for _, e := range ext {
		r := run{e.Start, uint64(e.Len)}
		w.dirty.add(r)
		w.alloc.release(r)
	}
}

// Remove removes name, and everything below it if it is a directory.
// Blocks no longer used by any name are reused by later files.
func (w *Writer) Remove(name string) error {
	if err := w.check("remove", name); err != nil {
		return err
	}
	parent, base, err := w.splitPath(name)
	if err != nil {
		return opErr("remove", name, err)
	}
	if parent == w.root && base == "lost+found" {
		// keep lost+found; e2fsck wants it. Empty it instead.
		lf := parent.dir.children[base]
		if lf != nil && lf.dir != nil {
			for n := range lf.dir.children {
				w.unlink(lf, n)
			}
			return nil
		}
	}
	if parent.dir.children[base] == nil {
		return opErr("remove", name, ErrNotExist)
	}
	w.unlink(parent, base)
	return nil
}

// Link adds newname as a hard link to the existing non-directory
// oldname. An existing newname is replaced as by [Writer.Remove].
func (w *Writer) Link(oldname, newname string) error {
	if err := w.check("link", newname); err != nil {
		return err
	}
	op, _, _, err := w.lookup(oldname)
	if err != nil {
		return opErr("link", oldname, err)
	}
	if op.dir != nil {
		return opErr("link", oldname, ErrIsDir)
	}
	parent, base, err := w.splitPath(newname)
	if err != nil {
		return opErr("link", newname, err)
	}
	if old := parent.dir.children[base]; old != nil {
		if old == op {
			return nil
		}
		if op.nlink >= maxLinks {
			return opErr("link", newname, ErrTooManyLinks)
		}
		w.unlink(parent, base)
		if op.nlink == 0 {
			return opErr("link", newname, fmt.Errorf("%w: %s removed by replacing %s", ErrNotExist, oldname, newname))
		}
	}
	if op.nlink >= maxLinks {
		return opErr("link", newname, ErrTooManyLinks)
	}
	op.nlink++
	parent.dir.children[w.arenas.name(base)] = op
	parent.dir.layout = nil
	return nil
}

func (w *Writer) lookup(name string) (*inode, *inode, string, error) {
	if name == "." {
		return w.root, nil, "", nil
	}
	parent, base, err := w.splitPath(name)
	if err != nil {
		return nil, nil, "", err
	}
	in := parent.dir.children[base]
	if in == nil {
		return nil, nil, "", ErrNotExist
	}
	return in, parent, base, nil
}

// Write writes the body of the regular file last passed to Create. It
// fails with ErrWriteTooLong past File.Size.
func (w *Writer) Write(p []byte) (int, error) {
	if w.closed {
		return 0, opErr("write", "", ErrClosed)
	}
	if w.err != nil {
		return 0, w.err
	}
	var tooLong bool
	if int64(len(p)) > w.remaining {
		p = p[:w.remaining]
		tooLong = true
	}
	n := 0
	for len(p) > 0 {
		if w.blkN > 0 || len(p) < blockSize {
			c := copy(w.blk[w.blkN:], p)
			copystat.Add(c)
			w.blkN += c
			p = p[c:]
			n += c
			w.remaining -= int64(c)
			if w.blkN == blockSize {
				if err := w.writeBlocks(w.blk); err != nil {
					return n, err
				}
				w.blkN = 0
			}
			continue
		}
		k := len(p) &^ (blockSize - 1)
		if err := w.writeBlocks(p[:k]); err != nil {
			return n, err
		}
		p = p[k:]
		n += k
		w.remaining -= int64(k)
	}
	if w.remaining == 0 && w.cur != nil {
		if w.blkN > 0 {
			clear(w.blk[w.blkN:])
			if err := w.writeBlocks(w.blk); err != nil {
				return n, err
			}
			w.blkN = 0
		}
		w.cur = nil
	}
	if tooLong {
		return n, opErr("write", w.curName, ErrWriteTooLong)
	}
	return n, nil
}

// Skip advances the body of the regular file last passed to Create by n
// bytes that read back as zeros, without writing them or giving them
// blocks: a hole. A sparse file is written as Write (or ReadFrom) for each
// run of data and Skip for each hole between, in order, up to File.Size.
// A partial block next to a hole is written whole, its hole part zero. It
// fails with ErrWriteTooLong past File.Size.
func (w *Writer) Skip(n int64) error {
	if w.closed {
		return opErr("write", "", ErrClosed)
	}
	if w.err != nil {
		return w.err
	}
	if n < 0 || n > w.remaining {
		return opErr("write", w.curName, fmt.Errorf("%w: skip %d bytes with %d left", ErrWriteTooLong, n, w.remaining))
	}
	if n == 0 {
		return nil
	}
	w.remaining -= n
	if w.blkN > 0 {
		c := int(min(n, int64(blockSize-w.blkN)))
		clear(w.blk[w.blkN : w.blkN+c])
		w.blkN += c
		n -= int64(c)
		if w.blkN == blockSize {
			if err := w.writeBlocks(w.blk); err != nil {
				return err
			}
			w.blkN = 0
		}
	}
	whole := n / blockSize
	w.lblk += uint64(whole)
	if r := int(n - whole*blockSize); r > 0 {
		clear(w.blk[:r])
		w.blkN = r
	}
	if w.remaining == 0 && w.cur != nil {
		if w.blkN > 0 {
			clear(w.blk[w.blkN:])
			if err := w.writeBlocks(w.blk); err != nil {
				return err
			}
			w.blkN = 0
		}
		w.cur = nil
	}
	return nil
}

// ReadFrom reads the rest of the current body from r, up to File.Size
// bytes, and returns the number of bytes read. It stops without error at
// EOF; a body left short is reported by the next call.
func (w *Writer) ReadFrom(r io.Reader) (int64, error) {
	if w.closed {
		return 0, opErr("write", "", ErrClosed)
	}
	if w.err != nil {
		return 0, w.err
	}
	var total int64
	for w.remaining > 0 {
		chunk, err := w.readBuf()
		if err != nil {
			return total, err
		}
		if int64(len(chunk)) > w.remaining {
			chunk = chunk[:w.remaining]
		}
		m, rerr := io.ReadFull(r, chunk)
		if m > 0 {
			k, err := w.Write(chunk[:m])
			total += int64(k)
			if err != nil {
				return total, err
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			return total, nil
		}
		if rerr != nil {
			return total, opErr("read", w.curName, rerr)
		}
	}
	return total, nil
}

// readBuf returns where ReadFrom reads the next bytes of the body: the free end of the
// pending data while the body is block-aligned so far (flushed first when less than
// 64 KiB is free), so that writeData finds them in place and combines or writes them
// without copying; a buffer of its own otherwise.
func (w *Writer) readBuf() ([]byte, error) {
	if w.blkN > 0 || w.overflow {
		if w.buf == nil {
			w.buf = make([]byte, 1<<20)
		}
		return w.buf, nil
	}
	if w.pend == nil {
		w.pend = make([]byte, 0, pendMax)
	}
	if cap(w.pend)-len(w.pend) < 64<<10 {
		if err := w.flush(); err != nil {
			w.err = opErr("write", w.curName, err)
			return nil, w.err
		}
	}
	return w.pend[len(w.pend):cap(w.pend)], nil
}

// writeBlocks writes whole blocks of the current body, leaving holes for
// blocks that are all zero.
func (w *Writer) writeBlocks(p []byte) error {
	nb := uint64(len(p) / blockSize)
	blk := func(i uint64) []byte { return p[i*blockSize : (i+1)*blockSize] }
	for i := uint64(0); i < nb; {
		if bytes.Equal(blk(i), zeroBlock) {
			i++
			continue
		}
		j := i + 1
		for j < nb && !bytes.Equal(blk(j), zeroBlock) {
			j++
		}
		for i < j {
			start, cnt, ok := w.allocData(j - i)
			if !ok {
				w.err = w.sizeErr("write")
				return w.err
			}
			if err := w.writeData(p[i*blockSize:(i+cnt)*blockSize], start); err != nil {
				w.err = opErr("write", w.curName, err)
				return w.err
			}
			if w.cur.ext == nil {
				w.cur.ext = w.arenas.extent()
			}
			w.cur.addExtent(w.lblk+i, start, cnt)
			i += cnt
		}
	}
	w.lblk += nb
	return nil
}

// newNum returns the number of a new inode: the next in order of
// creation. Numbers of removed inodes are not given again, so that an
// inode added last never lands amid the earlier ones (see number). Close
// fails with ErrTooManyInodes when they pass 2^32-1.
func (w *Writer) newNum() uint32 {
	w.nextNum++
	return uint32(w.nextNum - 1)
}

func (in *inode) addExtent(lblk, start, n uint64) {
	for n > 0 {
		if k := len(in.ext); k > 0 {
			e := &in.ext[k-1]
			if uint64(e.Logical)+uint64(e.Len) == lblk && e.Start+uint64(e.Len) == start && e.Len < disk.MaxExtentLen {
				c := min(n, uint64(disk.MaxExtentLen-e.Len))
				e.Len += uint16(c)
				lblk, start, n = lblk+c, start+c, n-c
				continue
			}
		}
		c := min(n, disk.MaxExtentLen)
		in.ext = append(in.ext, disk.Extent{Logical: uint32(lblk), Len: 0, Start: start})
		in.ext[len(in.ext)-1].Len = uint16(c)
		lblk, start, n = lblk+c, start+c, n-c
	}
}
