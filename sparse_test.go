package img2ext4_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/img2ext4/img2ext4"
	"github.com/img2ext4/img2ext4/internal/tartest"
	"golang.org/x/sys/unix"
)

// TestConvertSparseTiB converts an image whose layer holds a 1 TiB sparse file (PAX 1.0,
// made by GNU tar) into each format: the conversion reads and writes the file's data, not
// its size, so the ext4 image and the directory take a few blocks for it and the tar
// stays small; the ext4 image passes e2fsck and debugfs sees the whole size.
func TestConvertSparseTiB(t *testing.T) {
	if _, err := exec.LookPath("tar"); err != nil {
		t.Skip("GNU tar is not installed (Debian package tar)")
	}
	src := t.TempDir()
	f, err := os.Create(filepath.Join(src, "big"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(1 << 40); err != nil {
		t.Skipf("the temporary directory cannot hold a 1 TiB sparse file: %v", err)
	}
	if _, err := f.WriteAt([]byte("middle"), 1<<39); err != nil {
		t.Fatal(err)
	}
	f.Close()
	archive := filepath.Join(t.TempDir(), "layer.tar")
	if b, err := exec.Command("tar", "--sparse", "--format=posix", "--sparse-version=1.0", "-C", src, "-cf", archive, "big").CombinedOutput(); err != nil {
		t.Fatalf("GNU tar: %v\n%s", err, b)
	}
	layer, err := os.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	ref := pushed(t, tartest.Image(layer))
	disk := func(name string) int64 {
		var st unix.Stat_t
		if err := unix.Stat(name, &st); err != nil {
			t.Fatal(err)
		}
		return st.Blocks * 512
	}
	for _, format := range []img2ext4.Format{img2ext4.FormatExt4, img2ext4.FormatDir, img2ext4.FormatTar} {
		t.Run(string(format), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			if _, err := img2ext4.Convert(context.Background(), ref, out, img2ext4.WithFormat(format)); err != nil {
				t.Fatal(err)
			}
			switch format {
			case img2ext4.FormatExt4:
				if n := disk(out); n > 64<<20 {
					t.Errorf("the image takes %d bytes on disk", n)
				}
				fsck(t, out)
				st, err := exec.Command(needTool(t, "debugfs"), "-R", "stat /big", out).CombinedOutput()
				if err != nil {
					t.Fatalf("debugfs: %v\n%s", err, st)
				}
				if !regexp.MustCompile(`Size: 1099511627776\b`).Match(st) {
					t.Errorf("debugfs stat /big:\n%s", st)
				}
			case img2ext4.FormatDir:
				fi, err := os.Stat(filepath.Join(out, "big"))
				if err != nil {
					t.Fatal(err)
				}
				if fi.Size() != 1<<40 || disk(filepath.Join(out, "big")) > 1<<20 {
					t.Errorf("big: size %d, %d bytes on disk", fi.Size(), disk(filepath.Join(out, "big")))
				}
			case img2ext4.FormatTar:
				fi, err := os.Stat(out)
				if err != nil {
					t.Fatal(err)
				}
				if fi.Size() > 1<<20 {
					t.Errorf("the tar is %d bytes", fi.Size())
				}
			}
		})
	}
}
