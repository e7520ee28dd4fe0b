package layerapply

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/img2ext4/img2ext4/layerstream"
	"github.com/img2ext4/img2ext4/progress"
	"github.com/img2ext4/img2ext4/whiteout"
)

// Apply merges the layers of img, bottom first, into s. It returns the first error, wrapped
// with the layer digest and entry name it concerns. Apply does not close s: the caller
// finishes the sink (for example [Dir.Close]) once Apply has returned nil.
func Apply(ctx context.Context, s Sink, img v1.Image, opts ...Option) error {
	m, err := NewMerger(s, opts...)
	if err != nil {
		return err
	}
	defer m.Close()
	return m.Apply(ctx, img)
}

// Merger is the merged tree of an image as it is being written to a sink. [Apply] is
// NewMerger, [Merger.Apply] and [Merger.Close]; a caller that wants to change the result
// before the sink is finished (inject an init binary, a CA bundle) keeps the Merger and
// calls [Merger.RootFS] (or [Merger.Add]) after Apply. A Merger is not safe for concurrent use.
type Merger struct {
	a      *applier
	layers int // layers applied so far, the index of the next one
	added  bool
}

// NewMerger returns a Merger writing to s, with an empty tree.
func NewMerger(s Sink, opts ...Option) (*Merger, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
	a := &applier{
		ctx:  context.Background(),
		sink: s,
		opts: o,
		root: &node{typ: tar.TypeDir, upper: -1},
		buf:  make([]byte, 256<<10),
	}
	a.leaves, _ = s.(leafIndex)
	return &Merger{a: a}, nil
}

// Apply merges the layers of img, bottom first, on top of what the Merger holds. The layer
// blobs come from [WithLayers] when it was given, from img otherwise.
func (m *Merger) Apply(ctx context.Context, img v1.Image) error {
	a := m.a
	layers := a.opts.layers
	if layers == nil {
		var err error
		if layers, err = img.Layers(); err != nil {
			return fmt.Errorf("read image layers: %w", err)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("read image config: %w", err)
	}
	a.created = cf.Created.Time
	diffIDs := cf.RootFS.DiffIDs
	if len(diffIDs) != len(layers) {
		return fmt.Errorf("%w: image has %d layers but its config lists %d diff_ids", ErrInvalidEntry, len(layers), len(diffIDs))
	}
	if err := a.checkLayers(len(layers)); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	popts := []layerstream.Option{layerstream.WithTempDir(a.opts.tmpDir), layerstream.WithLimit(a.opts.limits.Bytes, 0)}
	if a.opts.jobs > 0 {
		popts = append(popts, layerstream.WithJobs(a.opts.jobs))
	}
	if a.opts.memory >= 0 {
		popts = append(popts, layerstream.WithMemory(a.opts.memory))
	}
	if a.opts.disk >= 0 {
		popts = append(popts, layerstream.WithDisk(a.opts.disk))
	}
	pl, err := layerstream.NewPipeline(ctx, layers, diffIDs, popts...)
	if err != nil {
		return err
	}
	defer pl.Close()
	a.ctx = ctx
	for i := range layers {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := a.applyLayer(m.layers, len(layers), pl, i)
		a.fresh.reset() // the next layer sees this one's leaves as lower
		if err != nil {
			return err
		}
		m.layers++
	}
	return nil
}

// Add applies one entry as if it stood in a new layer above everything applied so far; all
// Add calls share that layer. The entry follows the same rules as a tar member: hdr.Name
// resolves inside the root (symlinked parents followed, missing parents created), an
// existing entry is replaced (a directory over a directory merges), and whiteout names are
// honoured. For tar.TypeReg, body yields hdr.Size bytes.
func (m *Merger) Add(hdr *tar.Header, body io.Reader) error {
	a := m.a
	if !m.added {
		m.added = true
		a.startLayer(m.layers)
		a.digest = "added"
		a.pending = a.pending[:0]
		m.layers++
	}
	if err := a.entry(hdr, body); err != nil {
		return err
	}
	for _, h := range a.pending {
		a.mtime = h.ModTime
		if err := a.link(h, true); err != nil {
			return a.entryErr("link", h.Name, err)
		}
	}
	a.pending = a.pending[:0]
	return nil
}

// Close releases the decompressors the Merger holds. It does not close the sink.
func (m *Merger) Close() error {
	m.a.close()
	return nil
}

// applier holds the state of one Apply call.
type applier struct {
	ctx  context.Context
	sink Sink
	opts *options
	root *node

	layer    int             // index of the layer being applied
	digest   string          // its digest, for errors
	pending  []*tar.Header   // hard links whose target had not appeared yet
	skipped  map[string]bool // clean names of entries left out (see skipEntry)
	accounts accounts        // users and groups of the merged /etc/passwd and /etc/group
	entries  int64
	bytes    int64

	buf    []byte
	leaves leafIndex // the sink, when it indexes leaves itself
	fresh  freshSet  // leaves this layer wrote, with a leaf index

	src    tarSource  // under the layer's tar.Reader, for sparse entries
	sparse sparseBody // the body of the current sparse entry
	segs   []Segment  // its segments, for the sink's Entry

	out     Entry     // reused entry handed to the sink
	created time.Time // the image's creation time, for entries a RootFS makes
	mtime   time.Time // of implicit parent directories: the current entry's
}

func (a *applier) close() {}

// applyLayer applies layer i of the pipeline as the image's layer idx of count.
func (a *applier) applyLayer(idx, count int, pl *layerstream.Pipeline, i int) (err error) {
	a.startLayer(idx)
	a.digest = pl.Name(i)
	st, err := pl.Open(a.ctx, i,
		layerstream.WithLimit(a.opts.limits.Bytes, a.bytes),
		layerstream.WithProgress(a.opts.progress, progress.Event{
			Phase: progress.PhaseApply, Layer: idx, Layers: count, Digest: a.digest,
		}))
	if err != nil {
		return err
	}
	defer func() {
		if cerr := st.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	if err := a.applyTar(tar.NewReader(a.src.reset(st))); err != nil {
		return err
	}
	// Read what follows the end-of-archive marker: the stream verifies its DiffID at its end.
	if _, err := io.CopyBuffer(io.Discard, st, a.buf); err != nil {
		return fmt.Errorf("layer %s: read past end of tar: %w", a.digest, err)
	}
	a.bytes += st.Size()
	return nil
}

// applyTar applies every member of one layer's tar, then the hard links that came before
// their targets.
func (a *applier) applyTar(tr *tar.Reader) error {
	a.pending = a.pending[:0]
	for {
		// Next records the headers it reads, for a sparse entry's map (see sparse.go).
		a.src.startRecord()
		hdr, err := tr.Next()
		a.src.stopRecord()
		if err == io.EOF {
			break
		}
		if err != nil {
			if errors.Is(err, ErrLimit) || a.ctx.Err() != nil {
				return fmt.Errorf("layer %s: %w", a.digest, err)
			}
			if name, why := sparseDiagnosis(a.src.headers()); why != nil && !a.src.recBig {
				return a.entryErr("apply", name, fmt.Errorf("%w: %w (%w)", ErrInvalidEntry, why, err))
			}
			return fmt.Errorf("layer %s: read tar: %w", a.digest, err)
		}
		var body io.Reader = tr
		if isSparse(hdr) {
			if a.src.recBig {
				return a.entryErr("apply", hdr.Name, fmt.Errorf("%w: sparse entry after more than %d bytes of headers", ErrInvalidEntry, maxHeaderRecord))
			}
			segs, _, err := sparseMap(hdr, a.src.headers())
			if err != nil {
				return a.entryErr("apply", hdr.Name, fmt.Errorf("%w: %w", ErrInvalidEntry, err))
			}
			a.segs = segs
			body = a.sparse.reset(&a.src, segs, hdr.Size)
		}
		err = a.entry(hdr, body)
		a.segs = nil
		if err != nil {
			return err
		}
		// Read the rest of the body, so that the record of the next headers starts at
		// this entry's padding.
		if body == tr {
			_, err = io.CopyBuffer(io.Discard, tr, a.buf)
		} else {
			_, err = a.sparse.Seek(hdr.Size, io.SeekStart)
		}
		if err != nil {
			if errors.Is(err, ErrLimit) || a.ctx.Err() != nil {
				return fmt.Errorf("layer %s: %w", a.digest, err)
			}
			return fmt.Errorf("layer %s: read tar: %w", a.digest, err)
		}
	}
	for _, h := range a.pending {
		a.mtime = h.ModTime
		if err := a.link(h, true); err != nil {
			return a.entryErr("link", h.Name, err)
		}
	}
	return nil
}

func (a *applier) entryErr(op, name string, err error) error {
	return &EntryError{Layer: a.digest, Name: name, Op: op, Err: err}
}

// entry applies one tar member.
func (a *applier) entry(hdr *tar.Header, body io.Reader) error {
	switch hdr.Typeflag {
	case tar.TypeXGlobalHeader:
		return nil
	case tar.TypeReg, tar.TypeLink, tar.TypeSymlink, tar.TypeChar, tar.TypeBlock, tar.TypeDir, tar.TypeFifo:
	case '\x00', tar.TypeCont, tar.TypeGNUSparse:
		hdr.Typeflag = tar.TypeReg
	default:
		return a.entryErr("apply", hdr.Name, fmt.Errorf("%w: unsupported tar type %q", ErrInvalidEntry, hdr.Typeflag))
	}
	a.entries++
	if a.entries > a.opts.limits.Entries {
		return a.entryErr("apply", hdr.Name, &LimitError{What: "entries", Limit: a.opts.limits.Entries})
	}
	if len(hdr.Name) > a.opts.limits.PathLen || len(hdr.Linkname) > a.opts.limits.PathLen {
		return a.entryErr("apply", hdr.Name, &LimitError{What: "path length", Limit: int64(a.opts.limits.PathLen)})
	}
	if err := a.checkLimits(hdr); err != nil {
		return a.entryErr("apply", hdr.Name, err)
	}
	name, err := cleanName(hdr.Name)
	if err != nil {
		return a.entryErr("apply", hdr.Name, err)
	}
	a.mtime = hdr.ModTime
	switch k, target := whiteout.Classify(name); k {
	case whiteout.Meta:
		a.opts.logger.Debug("skip AUFS metadata", "layer", a.digest, "name", hdr.Name)
		return nil
	case whiteout.Invalid:
		return a.entryErr("whiteout", hdr.Name, fmt.Errorf("%w: invalid whiteout name", ErrUnsafePath))
	case whiteout.File:
		if hdr.Typeflag == tar.TypeLink {
			return a.entryErr("whiteout", hdr.Name, fmt.Errorf("%w: a whiteout cannot be a hard link", ErrInvalidEntry))
		}
		if err := a.whiteout(target); err != nil {
			return a.entryErr("whiteout", hdr.Name, err)
		}
		return nil
	case whiteout.Opaque:
		if err := a.opaque(target); err != nil {
			return a.entryErr("opaque", hdr.Name, err)
		}
		return nil
	}
	if reason := entryRule(hdr.Typeflag, name, hdr.Linkname); reason != "" {
		return a.skipEntry(hdr.Name, name, reason)
	}
	if hdr.Typeflag == tar.TypeLink {
		if err := a.link(hdr, false); err != nil {
			return a.entryErr("link", hdr.Name, err)
		}
		return nil
	}
	if err := a.create(name, hdr, body); err != nil {
		return a.entryErr("apply", hdr.Name, err)
	}
	return nil
}

// header fills the reused sink entry from hdr for the resolved name.
func (a *applier) header(name string, hdr *tar.Header) (*Entry, error) {
	a.out = Entry{
		Path:       name,
		Type:       Type(hdr.Typeflag),
		Mode:       uint32(hdr.Mode & 0o7777),
		UID:        hdr.Uid,
		GID:        hdr.Gid,
		ModTime:    hdr.ModTime,
		AccessTime: hdr.AccessTime,
		ChangeTime: hdr.ChangeTime,
		Linkname:   hdr.Linkname,
		Devmajor:   uint32(hdr.Devmajor),
		Devminor:   uint32(hdr.Devminor),
	}
	if hdr.Typeflag == tar.TypeReg {
		a.out.Size = hdr.Size
		a.out.Sparse = a.segs
	}
	x, err := a.xattrs(hdr)
	if err != nil {
		return nil, err
	}
	a.out.Xattrs = x
	return &a.out, nil
}

// mkdirImplicit creates a parent directory that the layer did not list.
func (a *applier) mkdirImplicit(parent *node, name string) (*node, error) {
	e := Entry{Type: TypeDir, Path: parent.join(name), Mode: 0o755, ModTime: a.mtime}
	if err := a.sink.Entry(&e, nil); err != nil {
		return nil, err
	}
	return a.addChild(parent, name, tar.TypeDir, "", e.Path), nil
}

// parentOf resolves the directory part of name, creating missing directories. It returns
// the parent, the base name and the resolved full name, which is name itself (no
// allocation) unless a symbolic link was followed.
func (a *applier) parentOf(name string) (parent *node, base, full string, err error) {
	dir, base := path.Split(name)
	dir = strings.TrimSuffix(dir, "/")
	parent, err = a.resolveDir(dir, true, a.mkdirImplicit)
	if err != nil {
		return nil, "", "", err
	}
	if parent.at(dir) {
		return parent, base, name, nil
	}
	return parent, base, parent.join(base), nil
}

// create applies a non-link entry.
func (a *applier) create(name string, hdr *tar.Header, body io.Reader) error {
	if name == "." {
		if hdr.Typeflag != tar.TypeDir {
			return fmt.Errorf("%w: the root must be a directory", ErrInvalidEntry)
		}
		h, err := a.header(".", hdr)
		if err != nil {
			return err
		}
		a.root.markUpper(a.layer)
		return a.sink.Entry(h, nil)
	}
	parent, base, full, err := a.parentOf(name)
	if err != nil {
		return err
	}
	h, err := a.header(full, hdr)
	if err != nil {
		return err
	}
	if old := a.childOf(parent, base, full); old != nil {
		if old.isDir() && hdr.Typeflag == tar.TypeDir {
			if err := a.sink.Entry(h, nil); err != nil {
				return err
			}
			old.markUpper(a.layer)
			return nil
		}
		if err := a.sink.Whiteout(full); err != nil {
			return err
		}
		old.remove()
	}
	if hdr.Typeflag != tar.TypeReg {
		body = nil
	}
	body = a.accounts.capture(full, hdr, body) // names for text ACLs
	if err := a.sink.Entry(h, body); err != nil {
		return err
	}
	a.addChild(parent, base, hdr.Typeflag, hdr.Linkname, full)
	return nil
}

// link applies a hard link. When its target has not appeared yet and final is false, the
// link is kept for the end of the layer.
func (a *applier) link(hdr *tar.Header, final bool) error {
	name, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	if name == "." {
		return fmt.Errorf("%w: the root cannot be a hard link", ErrInvalidEntry)
	}
	lname, err := cleanName(hdr.Linkname)
	if err != nil {
		return err
	}
	if lname == "." {
		return fmt.Errorf("%w: hard link to the root directory", ErrInvalidEntry)
	}
	ldir, lbase := path.Split(lname)
	lparent, err := a.resolveDir(strings.TrimSuffix(ldir, "/"), true, nil)
	if err != nil {
		return fmt.Errorf("hard link target %q: %w", hdr.Linkname, err)
	}
	var target *node
	if lparent != nil {
		full := "" // lname when it was reached without symbolic links: childOf need not build it
		if lparent.at(strings.TrimSuffix(ldir, "/")) {
			full = lname
		}
		target = a.childOf(lparent, lbase, full)
	}
	if target == nil {
		if !final {
			h := *hdr
			a.pending = append(a.pending, &h)
			return nil
		}
		if a.skipped[lname] {
			return a.warn(hdr.Name, "", ActionSkipped, "its hard link target was skipped")
		}
		return fmt.Errorf("%w: hard link target %q does not exist", ErrInvalidEntry, hdr.Linkname)
	}
	if target.isDir() {
		return fmt.Errorf("%w: hard link to directory %q", ErrInvalidEntry, hdr.Linkname)
	}
	parent, base, full, err := a.parentOf(name)
	if err != nil {
		return err
	}
	old := a.childOf(parent, base, full)
	if old == target || (old != nil && old.parent == target.parent && old.name == target.name) {
		return nil // a link to itself changes nothing
	}
	if old != nil && old.isDir() && strings.HasPrefix(target.path(), full+"/") {
		// Replacing the directory would remove the target first (GNU tar refuses too).
		return fmt.Errorf("%w: hard link %q would replace the directory that holds its target %q", ErrInvalidEntry, hdr.Name, hdr.Linkname)
	}
	h, err := a.header(full, hdr)
	if err != nil {
		return err
	}
	if h.Linkname = lname; !target.at(lname) {
		h.Linkname = target.path()
	}
	if old != nil {
		if err := a.sink.Whiteout(full); err != nil {
			return err
		}
		old.remove()
	}
	if err := a.sink.Entry(h, nil); err != nil {
		return err
	}
	a.addChild(parent, base, target.typ, target.target(), full)
	return nil
}

// lookupNoFollow finds the node for a clean name without following any symbolic link.
// A missing name, or a parent that is not a directory, gives (nil, nil).
func (a *applier) lookupNoFollow(name string) (*node, error) {
	if name == "." {
		return a.root, nil
	}
	dir, base := path.Split(name)
	parent, err := a.resolveDir(strings.TrimSuffix(dir, "/"), false, nil)
	var nd *notDirError
	switch {
	case errors.As(err, &nd):
		return nil, nil // a redundant whiteout below something that is no directory now
	case err != nil:
		return nil, fmt.Errorf("%w: %v", ErrUnsafePath, err)
	case parent == nil:
		return nil, nil
	}
	return a.childOf(parent, base, name), nil
}

// whiteout removes target and everything below it that lower layers wrote.
func (a *applier) whiteout(target string) error {
	n, err := a.lookupNoFollow(target)
	if err != nil || n == nil {
		return err
	}
	return a.removeLower(n)
}

// opaque hides the lower-layer children of dir.
func (a *applier) opaque(dir string) error {
	d, err := a.lookupNoFollow(dir)
	if err != nil || d == nil {
		return err
	}
	if d.typ == tar.TypeSymlink {
		return fmt.Errorf("%w: opaque marker under symbolic link %q", ErrUnsafePath, d.path())
	}
	if !d.isDir() || (a.leaves == nil && len(d.kids()) == 0) {
		return nil
	}
	upper := a.fresh.count(d) > 0
	for _, c := range d.kids() {
		if int(c.upper) >= a.layer {
			upper = true
			break
		}
	}
	if !upper {
		if err := a.sink.Opaque(d.path()); err != nil {
			return err
		}
		d.clearChildren()
		return nil
	}
	return a.removeLowerChildren(d)
}

// removeLower removes n, or when this layer wrote n or something below it, the lower-layer
// parts of n's subtree.
func (a *applier) removeLower(n *node) error {
	if int(n.upper) < a.layer {
		if err := a.sink.Whiteout(n.path()); err != nil {
			return err
		}
		n.remove()
		return nil
	}
	return a.removeLowerChildren(n)
}

func (a *applier) removeLowerChildren(d *node) error {
	names, err := a.childNames(d)
	if err != nil {
		return err
	}
	for _, name := range names {
		c := a.childOf(d, name, "")
		if c == nil {
			continue // lost+found, which only the sink knows
		}
		if err := a.removeLower(c); err != nil {
			return err
		}
	}
	return nil
}
