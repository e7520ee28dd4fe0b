package layerapply

import (
	"archive/tar"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"syscall"
)

// maxSymlinkHops bounds symbolic-link resolution, as the kernel's ELOOP does.
const maxSymlinkHops = 40

// node is the applier's view of one name in the merged tree: just enough to resolve paths
// and to tell which layer wrote what. It carries no content and no metadata beyond that,
// and stays small because most nodes are regular files: what only directories and
// symbolic links need lives in ext.
type node struct {
	name   string
	parent *node
	ext    *nodeExt // nil for anything but a directory with children or a symbolic link
	upper  int32    // highest layer that wrote this node or anything below it
	typ    byte     // tar type flag: TypeDir, TypeSymlink, TypeReg, ...
}

// nodeExt holds what a directory or a symbolic link needs beyond a node.
type nodeExt struct {
	children map[string]*node // of a directory
	target   string           // of a symbolic link
}

// newNode returns a node for a new entry named name (copied, so that it does not keep the
// tar header's whole name alive).
func newNode(name string, typ byte, target string) *node {
	n := &node{name: strings.Clone(name), typ: typ}
	if typ == tar.TypeSymlink {
		n.ext = &nodeExt{target: target}
	}
	return n
}

// child returns the child called name of a directory, or nil.
func (n *node) child(name string) *node {
	if n.ext == nil {
		return nil
	}
	return n.ext.children[name]
}

// kids returns the children of a directory (nil when it has none); do not change the map.
func (n *node) kids() map[string]*node {
	if n.ext == nil {
		return nil
	}
	return n.ext.children
}

// clearChildren forgets every child of a directory.
func (n *node) clearChildren() {
	if n.ext != nil {
		n.ext.children = nil
	}
}

// target returns a symbolic link's target.
func (n *node) target() string {
	if n.ext == nil {
		return ""
	}
	return n.ext.target
}

func (n *node) isDir() bool { return n.typ == tar.TypeDir }

// path returns the node's clean name relative to the root ("." for the root).
func (n *node) path() string {
	if n.parent == nil {
		return "."
	}
	if n.parent.parent == nil {
		return n.name
	}
	var parts []string
	for p := n; p.parent != nil; p = p.parent {
		parts = append(parts, p.name)
	}
	var b strings.Builder
	for i := len(parts) - 1; i >= 0; i-- {
		b.WriteString(parts[i])
		if i > 0 {
			b.WriteByte('/')
		}
	}
	return b.String()
}

// at reports whether the node is the one at the clean name p, reached without symbolic
// links; it allocates nothing.
func (n *node) at(p string) bool {
	for ; n.parent != nil; n = n.parent {
		if p == "" || p == "." {
			return false
		}
		i := strings.LastIndexByte(p, '/')
		if p[i+1:] != n.name {
			return false
		}
		if i < 0 {
			p = ""
		} else {
			p = p[:i]
		}
	}
	return p == "" || p == "."
}

// join returns the clean name of child base under the node.
func (n *node) join(base string) string {
	if n.parent == nil {
		return base
	}
	return n.path() + "/" + base
}

func (n *node) markUpper(layer int) {
	for p := n; p != nil && int(p.upper) < layer; p = p.parent {
		p.upper = int32(layer)
	}
}

func (n *node) add(child *node) {
	if n.ext == nil {
		n.ext = &nodeExt{}
	}
	if n.ext.children == nil {
		n.ext.children = make(map[string]*node)
	}
	child.parent = n
	n.ext.children[child.name] = child
}

func (n *node) remove() {
	if n.parent != nil {
		if n.parent.ext != nil {
			delete(n.parent.ext.children, n.name)
		}
		n.parent = nil
	}
}

// errNotDir is returned by resolveFrom when a path element is not a directory.
type notDirError struct{ path string }

func (e *notDirError) Error() string { return fmt.Sprintf("%s is not a directory", e.path) }

// errSymlinkParent is returned by resolveFrom when symlinks are not allowed and one is met.
type symlinkParentError struct{ path string }

func (e *symlinkParentError) Error() string {
	return fmt.Sprintf("%s is a symbolic link", e.path)
}

// resolveFrom walks dir (a clean relative name) from the directory cur with chroot
// semantics: ".." at the root stays at the root, and a symbolic link is followed inside the
// tree, an absolute target starting again at root. When follow is false a symbolic link is
// an error. A missing element is reported as (nil, nil) unless mkdir is set, in which case
// mkdir is called to create it and must return the new node. When the tree keeps no nodes
// for leaves, look finds a child that has no node (see [applier.childOf]).
func resolveFrom(root, cur *node, dir string, follow bool, mkdir func(parent *node, name string) (*node, error), look func(*node, string) *node) (*node, error) {
	if dir == "." || dir == "" {
		return cur, nil
	}
	rest := dir
	hops := 0
	for rest != "" {
		var elem string
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			elem, rest = rest[:i], rest[i+1:]
		} else {
			elem, rest = rest, ""
		}
		switch elem {
		case "", ".":
			continue
		case "..":
			if cur.parent != nil {
				cur = cur.parent
			}
			continue
		}
		child := cur.child(elem)
		if child == nil && look != nil {
			child = look(cur, elem)
		}
		if child == nil {
			if mkdir == nil {
				return nil, nil
			}
			var err error
			if child, err = mkdir(cur, elem); err != nil {
				return nil, err
			}
		}
		switch {
		case child.isDir():
			cur = child
		case child.typ == tar.TypeSymlink:
			if !follow {
				return nil, &symlinkParentError{child.path()}
			}
			hops++
			if hops > maxSymlinkHops {
				return nil, fmt.Errorf("%s: %w", dir, syscall.ELOOP)
			}
			t := child.target()
			if strings.HasPrefix(t, "/") {
				cur = root
				t = strings.TrimLeft(t, "/")
			}
			if rest == "" {
				rest = t
			} else if t != "" {
				rest = t + "/" + rest
			}
		default:
			return nil, &notDirError{child.path()}
		}
	}
	return cur, nil
}

// cleanName turns a raw tar name into a clean relative name, or reports that it escapes the
// root. Leading slashes and "./" are dropped, as tar does; a trailing slash is dropped.
func cleanName(raw string) (string, error) {
	if raw == "" {
		return "", fmt.Errorf("%w: empty name", ErrInvalidEntry)
	}
	if strings.IndexByte(raw, 0) >= 0 {
		return "", fmt.Errorf("%w: NUL byte in name", ErrInvalidEntry)
	}
	// Most names are clean already ("usr/bin/ls", "usr/bin/"): return them without
	// allocating.
	if t := strings.TrimSuffix(raw, "/"); fs.ValidPath(t) {
		return t, nil
	}
	p := path.Clean("/" + raw)
	// Clean("/"+x) never leaves the root, so compare with the lexical relative cleaning to
	// tell whether raw tried to.
	rel := path.Clean(strings.TrimLeft(raw, "/"))
	if rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("%w: %q climbs above the root", ErrUnsafePath, raw)
	}
	if p == "/" {
		return ".", nil
	}
	return p[1:], nil
}
