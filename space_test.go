package img2ext4_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/img2ext4/img2ext4"
	"github.com/img2ext4/img2ext4/internal/tartest"
)

// TestNoSpace converts onto a 4 MiB tmpfs an image whose layers alone are bigger: the run
// must fail before writing, with ErrNoSpace, and leave the filesystem as it was.
func TestNoSpace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	mnt := t.TempDir()
	if b, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount tmpfs: %v %s", err, b)
	}
	defer exec.Command("umount", mnt).Run()
	r := rand.New(rand.NewPCG(7, 7))
	b := make([]byte, 6<<20)
	for i := range b {
		b[i] = byte(r.UintN(256))
	}
	ref := pushed(t, tartest.Image(tartest.Tar(tartest.File("random", string(b)))))
	_, err := img2ext4.Convert(context.Background(), ref, filepath.Join(mnt, "out.img"))
	if !errors.Is(err, img2ext4.ErrNoSpace) {
		t.Fatalf("err = %v, want ErrNoSpace", err)
	}
	if left, _ := os.ReadDir(mnt); len(left) != 0 {
		t.Errorf("left on the full filesystem: %v", left)
	}
}
