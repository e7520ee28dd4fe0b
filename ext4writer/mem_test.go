package ext4writer

import (
	"fmt"
	"io/fs"
	"runtime"
	"testing"
)

// TestMemoryPerInode checks the in-memory cost of the merged tree stays
// under 1 KiB per inode, names included.
func TestMemoryPerInode(t *testing.T) {
	const n = 50000
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("d%d/some-typical-file-name-%06d.so", i%100, i)
	}
	body := []byte("#!/bin/sh\n")
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	w, err := New(nopWriterAt{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if err := w.Create(fmt.Sprintf("d%d", i), &File{Mode: fs.ModeDir | 0o755}); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range names {
		if err := w.Create(name, &File{Mode: 0o644, Size: int64(len(body)), Xattrs: map[string][]byte{"security.selinux": []byte("system_u:object_r:lib_t:s0")}}); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(after.HeapAlloc-before.HeapAlloc) / n
	t.Logf("%.0f bytes per inode", per)
	if per > 1024 {
		t.Errorf("%.0f bytes per inode, want <= 1024", per)
	}
	runtime.KeepAlive(w)
}
