package ext4writer

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// patternReader yields n bytes cycling through a fixed non-zero pattern.
type patternReader struct {
	pat []byte
	off int
	n   int64
}

func newPattern(n int64) *patternReader {
	p := randData(42, 1<<20)
	for i := range p {
		p[i] |= 1 // no zero blocks
	}
	return &patternReader{pat: p, n: n}
}

func (r *patternReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.n {
		p = p[:r.n]
	}
	k := 0
	for k < len(p) {
		c := copy(p[k:], r.pat[r.off:])
		k += c
		r.off = (r.off + c) % len(r.pat)
	}
	r.n -= int64(k)
	return k, nil
}

func benchFile(b *testing.B) *os.File {
	f, err := os.Create(filepath.Join(b.TempDir(), "img"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	return f
}

// BenchmarkSmallFiles writes 100k 100-byte files into one directory.
func BenchmarkSmallFiles(b *testing.B) {
	const n = 100000
	body := randData(9, 100)
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("d/file-%06d", i)
	}
	b.ReportAllocs()
	b.SetBytes(n * int64(len(body)))
	f := benchFile(b)
	for b.Loop() {
		if err := f.Truncate(0); err != nil {
			b.Fatal(err)
		}
		w, err := New(f)
		if err != nil {
			b.Fatal(err)
		}
		if err := w.Create("d", &File{Mode: 0o755 | os.ModeDir}); err != nil {
			b.Fatal(err)
		}
		hdr := &File{Mode: 0o644, Size: int64(len(body))}
		for _, name := range names {
			if err := w.Create(name, hdr); err != nil {
				b.Fatal(err)
			}
			if _, err := w.Write(body); err != nil {
				b.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLargeFile writes one 1 GiB file through ReadFrom.
func BenchmarkLargeFile(b *testing.B) {
	const size = 1 << 30
	b.ReportAllocs()
	b.SetBytes(size)
	f := benchFile(b)
	for b.Loop() {
		if err := f.Truncate(0); err != nil {
			b.Fatal(err)
		}
		w, err := New(f)
		if err != nil {
			b.Fatal(err)
		}
		if err := w.Create("big", &File{Mode: 0o644, Size: size}); err != nil {
			b.Fatal(err)
		}
		if _, err := w.ReadFrom(newPattern(size)); err != nil {
			b.Fatal(err)
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRawWrite is the baseline for BenchmarkLargeFile: the same
// bytes copied sequentially into a plain file.
func BenchmarkRawWrite(b *testing.B) {
	const size = 1 << 30
	b.ReportAllocs()
	b.SetBytes(size)
	f := benchFile(b)
	buf := make([]byte, 1<<20)
	for b.Loop() {
		if err := f.Truncate(0); err != nil {
			b.Fatal(err)
		}
		if _, err := f.Seek(0, 0); err != nil {
			b.Fatal(err)
		}
		if _, err := io.CopyBuffer(struct{ io.Writer }{f}, newPattern(size), buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReplace writes 2000 files of 64 KiB and removes every other
// one; "reused" then writes 1000 more into the freed blocks, "left-free"
// leaves them free, so Close punches 1000 holes: what a layer that
// replaces or deletes files costs.
func BenchmarkReplace(b *testing.B) {
	const n, size = 2000, 64 << 10
	body := newPattern(size).pat[:size]
	for _, reuse := range []bool{true, false} {
		b.Run(map[bool]string{true: "reused", false: "left-free"}[reuse], func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(n * size)
			for b.Loop() {
				f := benchFile(b)
				w, err := New(f, WithFreeSpace(0))
				if err != nil {
					b.Fatal(err)
				}
				put := func(name string) {
					if err := w.Create(name, &File{Mode: 0o644, Size: size}); err != nil {
						b.Fatal(err)
					}
					if _, err := w.Write(body); err != nil {
						b.Fatal(err)
					}
				}
				for i := range n {
					put(fmt.Sprintf("f%d", i))
				}
				for i := 0; i < n; i += 2 {
					if err := w.Remove(fmt.Sprintf("f%d", i)); err != nil {
						b.Fatal(err)
					}
				}
				if reuse {
					for i := 0; i < n; i += 2 {
						put(fmt.Sprintf("g%d", i))
					}
				}
				if err := w.Close(); err != nil {
					b.Fatal(err)
				}
				f.Close()
			}
		})
	}
}
