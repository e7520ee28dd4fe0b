package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/img2ext4/img2ext4/internal/tartest"
)

// TestNonRoot runs the real binary as an unprivileged user: owners and device nodes cannot
// be restored, everything else must be, and the user is told what was skipped in one line.
func TestNonRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch to an unprivileged user")
	}
	bin := buildBinary(t)
	work, err := os.MkdirTemp("", "img2ext4-nonroot-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(work)
	os.Chmod(work, 0o777)
	lay := filepath.Join(work, "layout")
	p, err := layout.Write(lay, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	img := tartest.Image(tartest.Tar(
		tartest.Dir("home", tartest.Owner(1000, 1000)),
		tartest.File("home/note", "hi", tartest.Owner(1000, 1000), tartest.Mode(0o640)),
		tartest.Dir("dev"),
		tartest.Char("dev/null", 1, 3),
		tartest.Fifo("dev/pipe", tartest.Mode(0o600)),
		tartest.File("ro", "x", tartest.Mode(0o444), tartest.Xattr("user.ok", "1"), tartest.Xattr("trusted.no", "2")),
		tartest.Dir("locked", tartest.Mode(0o500)),
		tartest.File("locked/inside", "in"),
	))
	if err := p.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	filepath.Walk(work, func(p string, info os.FileInfo, err error) error {
		if err == nil {
			os.Chmod(p, info.Mode().Perm()|0o555)
		}
		return nil
	})
	out := filepath.Join(work, "rootfs")
	cmd := exec.Command(bin, "--format", "dir", "--progress", "none", "oci:"+lay, out)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	cmd.Env = append(os.Environ(), "TMPDIR="+work, "HOME="+work)
	stderr, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("run as nobody: %v\n%s", err, stderr)
	}
	if !strings.Contains(string(stderr), "not root: skipped") || !strings.Contains(string(stderr), "1 device nodes") {
		t.Errorf("no summary of what was skipped: %s", stderr)
	}
	b, err := os.ReadFile(filepath.Join(out, "locked", "inside"))
	if err != nil || string(b) != "in" {
		t.Errorf("locked/inside = %q, %v", b, err)
	}
	st, _ := os.Stat(filepath.Join(out, "locked"))
	if st == nil || st.Mode().Perm() != 0o500 {
		t.Errorf("locked mode = %v", st)
	}
	if st, _ := os.Lstat(filepath.Join(out, "dev", "pipe")); st == nil || st.Mode()&os.ModeNamedPipe == 0 {
		t.Error("fifo not created")
	}
	if st, _ := os.Stat(filepath.Join(out, "ro")); st == nil || st.Mode().Perm() != 0o444 {
		t.Errorf("ro mode = %v", st)
	}
	os.Chmod(filepath.Join(out, "locked"), 0o755) // so the cleanup can remove it
}
