package layerapply_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/img2ext4/img2ext4/ext4writer"
	"github.com/img2ext4/img2ext4/internal/tartest"
	"github.com/img2ext4/img2ext4/layerapply"
)

// BenchmarkMemoryPerEntry applies one layer of 100k small files in 100 directories to the
// ext4 sink and reports the heap the merged tree holds per entry once the layer is applied:
// the merge's own nodes and the writer's inodes together, what an image with many files
// costs in memory.
func BenchmarkMemoryPerEntry(b *testing.B) {
	const n = 100_000
	es := make([]tartest.Entry, 0, n+100)
	for i := range 100 {
		es = append(es, tartest.Dir(fmt.Sprintf("usr/d%d", i)))
	}
	for i := range n {
		es = append(es, tartest.File(fmt.Sprintf("usr/d%d/some-typical-file-name-%06d.so", i%100, i), "#!/bin/sh\n"))
	}
	img := tartest.Image(tartest.Tar(es...))
	b.ReportAllocs()
	for b.Loop() {
		f, err := os.Create(filepath.Join(b.TempDir(), "img"))
		if err != nil {
			b.Fatal(err)
		}
		w, err := ext4writer.New(f)
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		m, err := layerapply.NewMerger(layerapply.NewExt4(w), layerapply.WithJobs(1))
		if err != nil {
			b.Fatal(err)
		}
		if err := m.Apply(context.Background(), img); err != nil {
			b.Fatal(err)
		}
		m.Close()
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/n, "heapB/entry")
		runtime.KeepAlive(m)
		runtime.KeepAlive(w)
		f.Close()
	}
}
