package ext4writer

import (
	"slices"
)

// ReadDir returns the names of the entries in the directory name, sorted, without "." and
// "..". It lets a caller that treats the Writer as its merged tree (a layer applier hiding
// the lower-layer children of an opaque directory) see what the directory holds.
func (w *Writer) ReadDir(name string) ([]string, error) {
	if w.err != nil {
		return nil, w.err
	}
	in, _, _, err := w.lookup(name)
	if err != nil {
		return nil, opErr("readdir", name, err)
	}
	if in.dir == nil {
		return nil, opErr("readdir", name, ErrNotDir)
	}
	names := make([]string, 0, len(in.dir.children))
	for n := range in.dir.children {
		names = append(names, n)
	}
	slices.Sort(names)
	return names, nil
}
