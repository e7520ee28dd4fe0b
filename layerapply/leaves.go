package layerapply

import (
	"archive/tar"
	"io/fs"
	"slices"
)

// leafIndex is implemented by sinks that hold the merged tree themselves ([Ext4], [Tar]).
// With such a sink the merge keeps nodes only for directories and symbolic links, the
// structure that paths resolve through, and asks the sink about everything else (regular
// files, devices, FIFOs: the leaves, most of an image's entries), so the tree is not held
// twice.
type leafIndex interface {
	// leaf returns the tar type of name when it exists in the sink as a leaf.
	leaf(name string) (typ byte, ok bool)
	// names lists the directory dir, sorted.
	names(dir string) ([]string, error)
}

// isLeaf reports whether entries of type typ have no node when the sink indexes leaves.
func isLeaf(typ byte) bool { return typ != tar.TypeDir && typ != tar.TypeSymlink }

// leafType maps type bits of a mode to the tar type of a leaf.
func leafType(t fs.FileMode) (byte, bool) {
	switch t {
	case 0:
		return tar.TypeReg, true
	case fs.ModeDevice | fs.ModeCharDevice:
		return tar.TypeChar, true
	case fs.ModeDevice:
		return tar.TypeBlock, true
	case fs.ModeNamedPipe:
		return tar.TypeFifo, true
	}
	return 0, false
}

func (s *Ext4) leaf(name string) (byte, bool) {
	t, ok := s.w.Kind(name)
	if !ok {
		return 0, false
	}
	return leafType(t)
}

func (s *Ext4) names(dir string) ([]string, error) { return s.w.ReadDir(dir) }

func (t *Tar) leaf(name string) (byte, bool) {
	_, _, n := t.lookup(name)
	if n == nil || !isLeaf(byte(n.ino.e.Type)) {
		return 0, false
	}
	return byte(n.ino.e.Type), true
}

func (t *Tar) names(dir string) ([]string, error) {
	_, _, n := t.lookup(dir)
	if n == nil {
		return nil, nil
	}
	out := make([]string, 0, len(n.children))
	for k := range n.children {
		out = append(out, k)
	}
	slices.Sort(out)
	return out, nil
}

// childOf returns the child name of the directory parent: its node, or with a leaf index a
// node made for the occasion (not linked into the tree) when the sink holds a leaf there.
// full is the child's clean path when the caller knows it, "" otherwise.
func (a *applier) childOf(parent *node, name, full string) *node {
	if c := parent.child(name); c != nil || a.leaves == nil {
		return c
	}
	if full == "" {
		full = parent.join(name)
	}
	typ, ok := a.leaves.leaf(full)
	if !ok {
		return nil
	}
	n := &node{name: name, parent: parent, typ: typ, upper: -1}
	if a.fresh.has(full) {
		n.upper = int32(a.layer)
	}
	return n
}

// look is childOf for resolveFrom, or nil without a leaf index.
func (a *applier) look() func(*node, string) *node {
	if a.leaves == nil {
		return nil
	}
	return func(p *node, name string) *node { return a.childOf(p, name, "") }
}

// resolveDir resolves dir from the root of the applier's tree (see resolveFrom).
func (a *applier) resolveDir(dir string, follow bool, mkdir func(parent *node, name string) (*node, error)) (*node, error) {
	return resolveFrom(a.root, a.root, dir, follow, mkdir, a.look())
}

// addChild records the new child base of parent, of type typ (target for a symbolic
// link), written by the current layer at the clean path full, and returns its node. A leaf
// gets no node when the sink indexes leaves (nil is returned): the layer remembers it wrote
// it.
func (a *applier) addChild(parent *node, base string, typ byte, target, full string) *node {
	if a.leaves != nil && isLeaf(typ) {
		a.fresh.add(parent, full)
		parent.markUpper(a.layer)
		return nil
	}
	n := newNode(base, typ, target)
	parent.add(n)
	n.markUpper(a.layer)
	return n
}

// startLayer begins layer idx: what the previous one wrote is lower now.
func (a *applier) startLayer(idx int) {
	a.layer = idx
	a.fresh.reset()
}

// childNames lists the children of the directory d: its nodes, and the sink's leaves.
func (a *applier) childNames(d *node) ([]string, error) {
	if a.leaves != nil && d.isDir() {
		return a.leaves.names(d.path())
	}
	names := make([]string, 0, len(d.kids()))
	for name := range d.kids() {
		names = append(names, name)
	}
	slices.Sort(names)
	return names, nil
}

// freshSet holds the leaves the current layer wrote, with a leaf index: their clean names
// and how many each directory holds. Few layers ask about them (only an entry replacing a
// leaf, a whiteout or opaque marker meeting one, or a hard link looking up its target,
// does), so a leaf is queued as it comes and the queue is hashed into the maps when a
// question comes: a layer of new files and no hard links (60,000 of them on the edge
// image) hashes none of its names a second time, and any other hashes each leaf once.
type freshSet struct {
	names map[string]bool
	in    map[*node]int
	queue []freshLeaf // added since the maps were last brought up to date
}

type freshLeaf struct {
	parent *node
	full   string
}

// add records the leaf at the clean name full, a child of parent.
func (f *freshSet) add(parent *node, full string) {
	f.queue = append(f.queue, freshLeaf{parent, full})
}

// sync brings the maps up to date with the queue.
func (f *freshSet) sync() {
	if len(f.queue) == 0 {
		return
	}
	if f.names == nil {
		f.names = make(map[string]bool, len(f.queue))
		f.in = make(map[*node]int)
	}
	for _, l := range f.queue {
		f.names[l.full] = true
		f.in[l.parent]++
	}
	clear(f.queue)
	f.queue = f.queue[:0]
}

// has reports whether the leaf at the clean name full was written by this layer.
func (f *freshSet) has(full string) bool {
	f.sync()
	return f.names[full]
}

// count returns how many leaves this layer wrote in the directory d.
func (f *freshSet) count(d *node) int {
	f.sync()
	return f.in[d]
}

// reset forgets every leaf, keeping the queue's memory for the next layer.
func (f *freshSet) reset() {
	clear(f.queue)
	*f = freshSet{queue: f.queue[:0]}
}
