package ext4writer

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// skipOp is one step of a body: data to write, or a hole of skip bytes.
type skipOp struct {
	data []byte
	skip int64
}

// TestSkip writes bodies as runs of data and holes (Skip), partial blocks on either side of
// a hole included, and reads them back with debugfs: the same bytes, and blocks only for the
// 4 KiB blocks that hold data.
func TestSkip(t *testing.T) {
	needTools(t)
	data := func(n int, c byte) skipOp { return skipOp{data: bytes.Repeat([]byte{c}, n)} }
	hole := func(n int64) skipOp { return skipOp{skip: n} }
	cases := []struct {
		name string
		ops  []skipOp
	}{
		{"all-hole", []skipOp{hole(10 << 20)}},
		{"aligned", []skipOp{data(4096, 'a'), hole(1 << 20), data(8192, 'b'), hole(4096)}},
		{"unaligned", []skipOp{data(100, 'a'), hole(5000), data(3, 'b'), hole(3), data(7000, 'c'), hole(1<<20 + 17)}},
		{"hole-first", []skipOp{hole(12345), data(1, 'x')}},
		{"inside-block", []skipOp{data(10, 'a'), hole(10), data(10, 'b')}},
		{"large", []skipOp{data(1, 'a'), hole(1 << 40), data(4, 'z')}},
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := New(f)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		var size int64
		for _, op := range tc.ops {
			size += int64(len(op.data)) + op.skip
		}
		if err := w.Create(tc.name, &File{Mode: 0o644, Size: size}); err != nil {
			t.Fatal(err)
		}
		for _, op := range tc.ops {
			if op.data != nil {
				if _, err := w.Write(op.data); err != nil {
					t.Fatalf("%s: %v", tc.name, err)
				}
			} else if err := w.Skip(op.skip); err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
		}
	}
	// past the end, and negative
	if err := w.Create("short", &File{Mode: 0o644, Size: 10}); err != nil {
		t.Fatal(err)
	}
	if err := w.Skip(11); !errors.Is(err, ErrWriteTooLong) {
		t.Errorf("Skip past File.Size: %v, want ErrWriteTooLong", err)
	}
	if err := w.Skip(-1); !errors.Is(err, ErrWriteTooLong) {
		t.Errorf("Skip(-1): %v, want ErrWriteTooLong", err)
	}
	if err := w.Skip(10); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	fsck(t, img)
	extent := regexp.MustCompile(`\((\d+)(?:-(\d+))?\):`)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// the content, block by block: data blocks and their offsets
			blocks := map[int64][]byte{}
			var off int64
			for _, op := range tc.ops {
				for i, c := range op.data {
					b := blocks[(off+int64(i))/blockSize]
					if b == nil {
						b = make([]byte, blockSize)
						blocks[(off+int64(i))/blockSize] = b
					}
					b[(off+int64(i))%blockSize] = c
				}
				off += int64(len(op.data)) + op.skip
			}
			out, err := exec.Command("debugfs", "-R", "stat /"+tc.name, img).CombinedOutput()
			if err != nil {
				t.Fatalf("debugfs: %v\n%s", err, out)
			}
			if m := regexp.MustCompile(`Size: (\d+)`).FindSubmatch(out); m == nil || string(m[1]) != strconv.FormatInt(off, 10) {
				t.Errorf("size %q, want %d", m, off)
			}
			_, ext, _ := strings.Cut(string(out), "EXTENTS:")
			var n int64
			for _, r := range extent.FindAllStringSubmatch(ext, -1) {
				lo, _ := strconv.ParseInt(r[1], 10, 64)
				hi := lo
				if r[2] != "" {
					hi, _ = strconv.ParseInt(r[2], 10, 64)
				}
				n += hi - lo + 1
				for l := lo; l <= hi; l++ {
					if blocks[l] == nil {
						t.Errorf("block %d has data in the image, none in the body", l)
					}
				}
			}
			if n != int64(len(blocks)) {
				t.Errorf("%d data blocks in the image, want %d", n, len(blocks))
			}
			if off > 1<<30 {
				return // too large to dump
			}
			dump := filepath.Join(t.TempDir(), "dump")
			if out, err := exec.Command("debugfs", "-R", "dump /"+tc.name+" "+dump, img).CombinedOutput(); err != nil {
				t.Fatalf("debugfs dump: %v\n%s", err, out)
			}
			got, err := os.ReadFile(dump)
			if err != nil {
				t.Fatal(err)
			}
			want := make([]byte, off)
			for l, b := range blocks {
				copy(want[l*blockSize:], b)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("debugfs dump differs from the body written")
			}
		})
	}
}
