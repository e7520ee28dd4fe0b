package main

import (
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/img2ext4/img2ext4/internal/tartest"
)

// treeHash hashes what is at path: a file's bytes, or a directory's names, modes, link
// targets and file contents, in order.
func treeHash(t *testing.T, path string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(path, p)
		fmt.Fprintf(h, "%s %v\n", rel, info.Mode())
		switch {
		case info.Mode().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(h, f)
			return err
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			fmt.Fprintln(h, target)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// TestKillLeavesNoPartialOutput kills a real conversion with SIGKILL at random moments
// (from a fixed seed) over the whole of its run, again and again in the same directory:
// OUT is always either what it was before or the complete output, and the run that
// finally completes leaves no temporary file of the killed ones behind.
func TestKillLeavesNoPartialOutput(t *testing.T) {
	bin := buildBinary(t)
	rng := rand.New(rand.NewPCG(2026, 12))
	src := "oci:" + fourLayers(t)
	tmpdir := t.TempDir()
	convert := func(format, out string) *exec.Cmd {
		cmd := exec.Command(bin, "-q", "--format", format, src, out)
		cmd.Env = append(os.Environ(), "TMPDIR="+tmpdir)
		return cmd
	}

	for _, format := range []string{"ext4", "tar", "dir"} {
		t.Run(format, func(t *testing.T) {
			ref := filepath.Join(t.TempDir(), "ref")
			start := time.Now()
			if out, err := convert(format, ref).CombinedOutput(); err != nil {
				t.Fatalf("reference run: %v\n%s", err, out)
			}
			span := time.Since(start) * 3 / 2
			want := treeHash(t, ref)

			dir := t.TempDir()
			out := filepath.Join(dir, "out")
			var old string
			if format == "dir" {
				os.Mkdir(out, 0o755)
			} else {
				os.WriteFile(out, []byte("old"), 0o644)
			}
			old = treeHash(t, out)
			killed := 0
			reset := func() {
				// A complete directory output refuses the next run: start it empty again.
				if format == "dir" && old == want {
					os.RemoveAll(out)
					os.Mkdir(out, 0o755)
					old = treeHash(t, out)
				}
			}
			for i := range 12 {
				reset()
				cmd := convert(format, out)
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				delay := time.Duration(rng.Int64N(int64(span)))
				time.Sleep(delay)
				cmd.Process.Kill()
				if err := cmd.Wait(); err != nil {
					killed++
				}
				if got := treeHash(t, out); got != old && got != want {
					t.Fatalf("kill %d after %v: %s is neither as before nor complete", i, delay, out)
				} else if got == want {
					old = want // a completed run: from now on only the complete output is right
				}
			}
			if killed == 0 {
				t.Fatalf("no run was killed before it ended (runs take about %v)", span*2/3)
			}
			reset()
			if out, err := convert(format, out).CombinedOutput(); err != nil {
				t.Fatalf("final run: %v\n%s", err, out)
			}
			if treeHash(t, out) != want {
				t.Error("the final run's output differs from the reference")
			}
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				if e.Name() != "out" {
					t.Errorf("left behind after %d killed runs: %s", killed, e.Name())
				}
			}
			if format == "dir" {
				inner, _ := os.ReadDir(out)
				for _, e := range inner {
					if strings.Contains(e.Name(), "img2ext4") {
						t.Errorf("temporary %s left inside the output", e.Name())
					}
				}
			}
			t.Logf("%d of 12 runs killed over %v", killed, span)
		})
	}
}

// fourLayers writes an OCI layout of four layers of 3 MiB of noise each, which takes a
// conversion long enough to be killed in each of its phases.
func fourLayers(t *testing.T) string {
	t.Helper()
	lay := filepath.Join(t.TempDir(), "layout")
	p, err := layout.Write(lay, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	var layers [][]byte
	for i := range 4 {
		b := make([]byte, 3<<20)
		rand.NewChaCha8([32]byte{byte(i)}).Read(b)
		layers = append(layers, tartest.Tar(tartest.Dir(fmt.Sprintf("d%d", i)), tartest.File(fmt.Sprintf("d%d/blob", i), string(b))))
	}
	if err := p.AppendImage(tartest.Image(layers...)); err != nil {
		t.Fatal(err)
	}
	return lay
}

// TestKillBlockDevice kills conversions into a loop device at random moments (fixed
// seed): the device never carries an ext4 superblock unless it holds the complete
// filesystem, so a half-written device cannot be mounted.
func TestKillBlockDevice(t *testing.T) {
	needRootTools(t, "losetup")
	bin := buildBinary(t)
	src := "oci:" + fourLayers(t)
	dir := t.TempDir()
	const size = 24 << 20
	ref := filepath.Join(dir, "ref.img")
	start := time.Now()
	if out, err := exec.Command(bin, "-q", "--size", "24M", src, ref).CombinedOutput(); err != nil {
		t.Fatalf("reference run: %v\n%s", err, out)
	}
	span := time.Since(start) * 3 / 2
	want := fileHash(t, ref, 0, size)
	backing := filepath.Join(dir, "backing")
	if err := os.WriteFile(backing, make([]byte, size), 0o600); err != nil {
		t.Fatal(err)
	}
	// An old ext4 filesystem: its superblock must go as soon as the new one is written.
	if out, err := exec.Command(bin, "-q", "--size", "24M", "oci:"+hello, backing).CombinedOutput(); err != nil {
		t.Fatalf("old filesystem: %v\n%s", err, out)
	}
	node := loopDevice(t, backing, dir, false)
	// The only contents with a superblock: the old filesystem, untouched, or the new one,
	// complete.
	valid := map[[32]byte]bool{fileHash(t, node, 0, size): true, want: true}
	rng := rand.New(rand.NewPCG(7, 2026))
	killed, complete := 0, 0
	for i := range 10 {
		cmd := exec.Command(bin, "-q", src, node)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		delay := time.Duration(rng.Int64N(int64(span)))
		time.Sleep(delay)
		cmd.Process.Kill()
		if cmd.Wait() != nil {
			killed++
		}
		isBlock(t, node)
		f, err := os.Open(node)
		if err != nil {
			t.Fatal(err)
		}
		magic := make([]byte, 2)
		_, err = f.ReadAt(magic, 1080)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		hash := fileHash(t, node, 0, size)
		if hash == want {
			complete++
		}
		if magic[0] == 0x53 && magic[1] == 0xef && !valid[hash] {
			t.Fatalf("kill %d after %v: an ext4 superblock on a device that holds neither the old nor the complete filesystem", i, delay)
		}
	}
	if killed == 0 {
		t.Fatalf("no run was killed before it ended (runs take about %v)", span*2/3)
	}
	t.Logf("%d of 10 runs killed, %d complete, over %v", killed, complete, span)
}
