package ext4writer

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"testing"
)

// Two versions of an image built in layers, as a layer applier drives the
// writer: the same lower layers, and in version 2 a top layer that adds a
// few files and removes one. Chunked, deduplicated storage of the images
// (issue 10) needs version 2 to share most chunks with version 1.

// placementLower returns the lower layers: many small files in many
// directories (so that the metadata spans many chunks), a few large ones,
// then a second layer of files in other directories.
func placementLower() []entry {
	var ents []entry
	dir := func(name string) { ents = append(ents, entry{name: name, mode: 0o755 | os.ModeDir}) }
	dir("l1")
	for d := range 40 {
		dir(fmt.Sprintf("l1/d%02d", d))
		for f := range 100 {
			seed := uint64(d*1000 + f)
			ents = append(ents, entry{name: fmt.Sprintf("l1/d%02d/f%03d", d, f), mode: 0o644, data: randData(seed, 1+int(seed*7919%6000))})
		}
	}
	for i := range 4 {
		ents = append(ents, entry{name: fmt.Sprintf("l1/big%d", i), mode: 0o644, data: randData(uint64(100000+i), 1<<20)})
	}
	dir("l2")
	for d := range 10 {
		dir(fmt.Sprintf("l2/d%d", d))
		for f := range 40 {
			ents = append(ents, entry{name: fmt.Sprintf("l2/d%d/f%d", d, f), mode: 0o644, data: randData(uint64(200000+d*100+f), 4096)})
		}
	}
	return ents
}

// placementHoles is a lower layer that removes a quarter of layer 1's
// directories, leaving free blocks amid the content, as a layer of
// whiteouts does.
func placementHoles() []entry {
	var ents []entry
	for d := 10; d < 20; d++ {
		ents = append(ents, entry{name: fmt.Sprintf("l1/d%02d", d), remove: true})
	}
	return append(ents, entry{name: "l3", mode: 0o755 | os.ModeDir}, entry{name: "l3/f", mode: 0o644, data: randData(300000, 100<<10)})
}

// placementTop is version 2's top layer: it adds a program (a new
// directory tree), a file into an existing directory, and removes a file
// of layer 1. changed is the number of directories whose entries change.
func placementTop() (top []entry, data int64, removed int64, changed int) {
	top = []entry{
		{name: "app", mode: 0o755 | os.ModeDir},
		{name: "app/bin", mode: 0o755 | os.ModeDir},
		{name: "app/bin/app", mode: 0o755, data: randData(400000, 600<<10)},
		{name: "app/etc", mode: 0o755 | os.ModeDir},
		{name: "app/etc/app.conf", mode: 0o644, data: []byte("workers: 4\n")},
		{name: "l1/d05/new", mode: 0o644, data: randData(400001, 3000)},
		{name: "l1/d30/f007", remove: true},
	}
	for _, e := range top {
		data += int64(len(e.data))
	}
	return top, data, int64(len(randData(30007, 1+int(30007*7919%6000)))), 6 // ., app, app/bin, app/etc, l1/d05, l1/d30
}

// TestStablePlacement builds both versions and counts the chunks of
// version 2 that differ from version 1's at the same offset. A chunk may
// differ only where the top layer puts something: its file data, the
// removed file's blocks, the superblock, the two bitmaps, the inode table
// chunks of the new inodes and of the directories that changed, and the
// blocks of those directories. Before placement was made stable, the
// metadata followed the top layer's data, and most of it moved.
func TestStablePlacement(t *testing.T) {
	const chunk = 64 << 10
	top, data, removed, changed := placementTop()
	bound := int(ceilDiv(uint64(data), chunk)+1) + // top layer's data, contiguous
		int(ceilDiv(uint64(removed), chunk)+1) + // the removed file's blocks, zeroed
		1 + 2 + // superblock and descriptors; block and inode bitmaps
		2 + 2*changed // inode table chunks of the new inodes, then per changed directory its inode and blocks
	for _, tc := range []struct {
		name  string
		lower []entry
		opts  []Option
	}{
		{"appended", placementLower(), nil},
		{"legacy", placementLower(), []Option{WithLegacy()}},
		{"align-2M", placementLower(), []Option{WithAlign(2 << 20)}},
		{"holes", append(placementLower(), placementHoles()...), nil},
		// no free space to speak of: the metadata goes into the freed
		// blocks, which the top layer's bodies must leave alone (the
		// ratio leaves room for the free inode numbers)
		{"holes-minimal", append(placementLower(), placementHoles()...), []Option{WithFreeSpace(0), WithInodeRatio(4096)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v1 := buildImage(t, tc.lower, tc.opts...)
			v2 := buildImage(t, append(tc.lower[:len(tc.lower):len(tc.lower)], top...), tc.opts...)
			a, err := os.ReadFile(v1)
			if err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(v2)
			if err != nil {
				t.Fatal(err)
			}
			var nonzero, differ int
			var at []int
			zero := make([]byte, chunk)
			for off := 0; off < len(b); off += chunk {
				cb := b[off:min(off+chunk, len(b))]
				if bytes.Equal(cb, zero[:len(cb)]) {
					continue
				}
				nonzero++
				if off+len(cb) > len(a) || !bytes.Equal(cb, a[off:off+len(cb)]) {
					differ++
					at = append(at, off/chunk)
				}
			}
			t.Logf("version 2: %d bytes, %d non-zero chunks of %d KiB, %d differ from version 1 at the same offset (at most %d expected): %v",
				len(b), nonzero, chunk>>10, differ, bound, at)
			if differ > bound {
				t.Errorf("%d of version 2's %d non-zero chunks differ from version 1's at the same offset, want at most %d", differ, nonzero, bound)
			}
			if _, err := exec.LookPath("e2fsck"); err == nil {
				fsck(t, v1)
				fsck(t, v2)
			}
		})
	}
}

// TestStableMetadata checks where the group metadata goes: version 2's
// bitmaps and inode tables lie where version 1's do, although its file
// data ends further on.
func TestStableMetadata(t *testing.T) {
	needTools(t)
	top, _, _, _ := placementTop()
	lower := placementLower()
	v1 := buildImage(t, lower)
	v2 := buildImage(t, append(lower[:len(lower):len(lower)], top...))
	locs := regexp.MustCompile(`(?m)^\s*(Group\s+\d+: block bitmap at \d+, inode bitmap at \d+, inode table at \d+)`)
	where := func(img string) string {
		out := debugfs(t, img, "stats")
		var b bytes.Buffer
		for _, m := range locs.FindAllStringSubmatch(out, -1) {
			fmt.Fprintln(&b, m[1])
		}
		return b.String()
	}
	w1, w2 := where(v1), where(v2)
	if w1 == "" {
		t.Fatal("debugfs stats shows no group metadata")
	}
	if w1 != w2 {
		t.Errorf("group metadata moved:\nversion 1:\n%sversion 2:\n%s", w1, w2)
	}
}
