package fuzz

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
)

// This file is a reference model of the OCI layer merge, written from the image spec
// (opencontainers/image-spec layer.md, "Applying Changesets" and "Whiteouts") and from the
// rules the project documents where the spec leaves a choice, without looking at
// layerapply's data structures and without importing layerapply or whiteout. It is a plain
// map from clean path to node, applied one tar member at a time:
//
//   - An entry replaces whatever had its name, except that a directory over a directory
//     keeps the directory and takes the new metadata (spec: "Modifications").
//   - Missing parent directories are created (mode 0755, owner 0:0, the entry's mtime).
//   - Parents resolve through symbolic links inside the root: relative targets from the
//     link's directory, absolute ones from the root, ".." stopping at the root, at most
//     40 links per name (ELOOP beyond). A parent that is not a directory is an error.
//   - ".wh.NAME" removes NAME and everything below it, but only what lower layers wrote
//     (spec: "Whiteout files MUST only apply to resources in lower/parent layers"): a name
//     this layer wrote, and the directories leading to it, stay. A whiteout of a missing
//     name, or below something that is no directory, does nothing; a whiteout whose parent
//     is a symbolic link is refused (it would reach outside its own directory).
//   - ".wh..wh..opq" removes everything below its directory that lower layers wrote,
//     wherever it stands in the layer; the directory stays. Under a symbolic link it is
//     refused, like a whiteout.
//   - A hard link gives its name the inode of its target (looked up without following the
//     last element); a link to itself changes nothing; a link to a directory, or to a
//     missing target, or one replacing a directory that holds its own target, is an error.
//
// The fuzz generator only emits what this model covers: names without "..", whiteout
// names that are valid, hard links to names that exist when the link is read.

// inode is what a name refers to; hard links share one.
type inode struct {
	typ          byte // 'f' file, 'd' directory, 'l' symlink, 'p' fifo, 'c' character device
	perm         uint32
	uid, gid     int
	mtime        int64
	content      string // file body or symlink target
	xattrs       map[string]string
	major, minor uint32
}

// mnode is one name of the merged tree.
type mnode struct {
	ino   *inode
	layer int // the layer that last wrote this name
}

// model is the merged tree so far: clean path (no leading slash, root not stored) to node.
type model struct {
	nodes map[string]*mnode
	layer int
}

var (
	errNotDir        = errors.New("model: parent is not a directory")
	errLoop          = errors.New("model: too many symbolic links")
	errSymlinkParent = errors.New("model: whiteout or opaque marker below a symbolic link")
	errLinkDir       = errors.New("model: hard link to a directory")
	errLinkMissing   = errors.New("model: hard link to a missing target")
	// errLinkOverTarget: a hard link replacing a directory that holds its own target (GNU
	// tar cannot extract it either: the directory is not empty).
	errLinkOverTarget = errors.New("model: hard link over a directory holding its target")
)

func newModel() *model { return &model{nodes: map[string]*mnode{}} }

func join(dir, base string) string {
	if dir == "" {
		return base
	}
	return dir + "/" + base
}

func parentDir(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i]
	}
	return ""
}

func elems(p string) []string {
	var out []string
	for _, e := range strings.Split(p, "/") {
		if e != "" && e != "." {
			out = append(out, e)
		}
	}
	return out
}

// resolveDir resolves the directory dir ("" is the root). With follow, symbolic links are
// followed; without, one is errSymlinkParent. With create, missing directories are made as
// implicit parents with the given mtime; without, a missing one gives ok false. A
// component that is neither is errNotDir.
func (m *model) resolveDir(dir string, follow, create bool, mtime int64) (p string, ok bool, err error) {
	rest := elems(dir)
	hops := 0
	cur := ""
	for len(rest) > 0 {
		e := rest[0]
		rest = rest[1:]
		if e == ".." {
			cur = parentDir(cur)
			continue
		}
		next := join(cur, e)
		n := m.nodes[next]
		if n == nil {
			if !create {
				return "", false, nil
			}
			n = &mnode{ino: &inode{typ: 'd', perm: 0o755, mtime: mtime}, layer: m.layer}
			m.nodes[next] = n
		}
		switch n.ino.typ {
		case 'd':
			cur = next
		case 'l':
			if !follow {
				return "", false, errSymlinkParent
			}
			if hops++; hops > 40 {
				return "", false, errLoop
			}
			t := n.ino.content
			if strings.HasPrefix(t, "/") {
				cur = ""
			}
			rest = append(elems(t), rest...)
		default:
			return "", false, errNotDir
		}
	}
	return cur, true, nil
}

// below lists p and every name under it.
func (m *model) below(p string) []string {
	var out []string
	for q := range m.nodes {
		if q == p || p == "" || strings.HasPrefix(q, p+"/") {
			out = append(out, q)
		}
	}
	slices.Sort(out)
	return out
}

func (m *model) removeTree(p string) {
	for _, q := range m.below(p) {
		delete(m.nodes, q)
	}
}

// upper reports whether this layer wrote p or anything below it.
func (m *model) upper(p string) bool {
	for _, q := range m.below(p) {
		if m.nodes[q].layer == m.layer {
			return true
		}
	}
	return false
}

// removeLower removes p with everything below it when no part of it is this layer's;
// otherwise it descends and removes the lower parts.
func (m *model) removeLower(p string) {
	if m.nodes[p] == nil {
		return
	}
	if !m.upper(p) {
		m.removeTree(p)
		return
	}
	m.removeLowerChildren(p)
}

func (m *model) removeLowerChildren(dir string) {
	for _, q := range m.below(dir) {
		if q != dir && parentDir(q) == dir {
			m.removeLower(q)
		}
	}
}

// lookupMarker finds the node a whiteout or opaque marker names, walking its parents
// without following symbolic links. ok is false when nothing is to be done.
func (m *model) lookupMarker(p string) (ok bool, err error) {
	_, ok, err = m.resolveDir(parentDir(p), false, false, 0)
	if errors.Is(err, errNotDir) {
		return false, nil
	}
	if err != nil || !ok {
		return false, err
	}
	return m.nodes[p] != nil, nil
}

// whiteout applies ".wh.NAME" for the clean name p.
func (m *model) whiteout(p string) error {
	ok, err := m.lookupMarker(p)
	if err != nil || !ok {
		return err
	}
	m.removeLower(p)
	return nil
}

// opaque applies ".wh..wh..opq" in the directory dir ("" is the root).
func (m *model) opaque(dir string) error {
	if dir != "" {
		ok, err := m.lookupMarker(dir)
		if err != nil || !ok {
			return err
		}
		switch m.nodes[dir].ino.typ {
		case 'l':
			return errSymlinkParent
		case 'd':
		default:
			return nil
		}
	}
	m.removeLowerChildren(dir)
	return nil
}

// create applies an entry that is not a hard link.
func (m *model) create(p string, ino *inode) error {
	dir, ok, err := m.resolveDir(parentDir(p), true, true, ino.mtime)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("model: cannot resolve %s", p)
	}
	full := join(dir, path.Base(p))
	if old := m.nodes[full]; old != nil {
		if old.ino.typ == 'd' && ino.typ == 'd' {
			old.ino = ino
			old.layer = m.layer
			return nil
		}
		m.removeTree(full)
	}
	m.nodes[full] = &mnode{ino: ino, layer: m.layer}
	return nil
}

// link applies a hard link named p to the archive path target.
func (m *model) link(p, target string, mtime int64) error {
	tdir, ok, err := m.resolveDir(parentDir(target), true, false, 0)
	if err != nil {
		return err
	}
	if !ok {
		return errLinkMissing
	}
	tfull := join(tdir, path.Base(target))
	t := m.nodes[tfull]
	if t == nil {
		return errLinkMissing
	}
	if t.ino.typ == 'd' {
		return errLinkDir
	}
	dir, ok, err := m.resolveDir(parentDir(p), true, true, mtime)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("model: cannot resolve %s", p)
	}
	full := join(dir, path.Base(p))
	if full == tfull {
		return nil
	}
	if strings.HasPrefix(tfull, full+"/") {
		return errLinkOverTarget
	}
	if m.nodes[full] != nil {
		m.removeTree(full)
	}
	m.nodes[full] = &mnode{ino: t.ino, layer: m.layer}
	return nil
}

// lines renders the merged tree one name per line, with every attribute the sinks are
// compared on; groups of hard links are named by their smallest path.
func (m *model) lines(o renderOpts) []string {
	first := map[*inode]string{}
	count := map[*inode]int{}
	for p, n := range m.nodes {
		if n.ino.typ == 'd' {
			continue
		}
		count[n.ino]++
		if f, ok := first[n.ino]; !ok || p < f {
			first[n.ino] = p
		}
	}
	var out []string
	for p, n := range m.nodes {
		link := ""
		if count[n.ino] > 1 {
			link = first[n.ino]
		}
		out = append(out, render(p, n.ino, link, o))
	}
	slices.Sort(out)
	return out
}

// renderOpts leaves out what a reader cannot see.
type renderOpts struct {
	noSpecial bool // setuid, setgid and sticky bits
	noXattrs  bool
	noMtime   bool
}

// render is the one-line form every reader of every sink produces for comparison.
func render(p string, ino *inode, link string, o renderOpts) string {
	perm := ino.perm
	if ino.typ == 'l' {
		perm = 0o777
	}
	if o.noSpecial {
		perm &^= 0o7000
	}
	var x []string
	if !o.noXattrs {
		for k, v := range ino.xattrs {
			x = append(x, fmt.Sprintf("%s=%q", k, v))
		}
		slices.Sort(x)
	}
	mt := ino.mtime
	if o.noMtime || ino.typ == 'l' {
		mt = 0 // symbolic link times are not compared: not every reader keeps them
	}
	s := fmt.Sprintf("%s %c %04o %d:%d mtime=%d", p, ino.typ, perm, ino.uid, ino.gid, mt)
	switch ino.typ {
	case 'f':
		c := ino.content
		if len(c) > 64 {
			c = fmt.Sprintf("sha256:%x", sha256.Sum256([]byte(c)))
		}
		s += fmt.Sprintf(" size=%d %q", len(ino.content), c)
	case 'l':
		s += fmt.Sprintf(" -> %q", ino.content)
	case 'c':
		s += fmt.Sprintf(" dev=%d,%d", ino.major, ino.minor)
	}
	if link != "" {
		s += " link=" + link
	}
	if len(x) > 0 {
		s += " xattrs=[" + strings.Join(x, " ") + "]"
	}
	return s
}
