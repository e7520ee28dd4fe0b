package writercmp

import (
	"archive/tar"
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/Microsoft/hcsshim/ext4/tar2ext4"
	"github.com/img2ext4/img2ext4/ext4writer"
)

// writeFunc writes c as an ext4 image (or, for raw, a plain file) at out and
// syncs it.
type writeFunc func(c *content, out string) error

// writeOurs feeds c to ext4writer entry by entry.
func writeOurs(c *content, out string) (err error) {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	w, err := ext4writer.New(f)
	if err != nil {
		return err
	}
	hdr := new(ext4writer.File)
	err = c.each(func(e *entry) error {
		if e.hardlink != "" {
			return w.Link(e.hardlink, e.name)
		}
		*hdr = ext4writer.File{
			Mode: e.mode, UID: e.uid, GID: e.gid,
			Atime: e.atime, Mtime: e.mtime, Ctime: e.ctime,
			Size: e.size, Linkname: e.linkname, Devmajor: e.devmajor, Devminor: e.devminor,
		}
		if err := w.Create(e.name, hdr); err != nil {
			return err
		}
		if !e.mode.IsRegular() {
			return nil
		}
		r, err := body(e)
		if err != nil {
			return err
		}
		_, err = w.ReadFrom(r)
		if cerr := r.Close(); err == nil {
			err = cerr
		}
		return err
	})
	if err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return f.Sync()
}

func tarMode(m fs.FileMode) int64 {
	v := int64(m.Perm())
	if m&fs.ModeSetuid != 0 {
		v |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		v |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		v |= 0o1000
	}
	return v
}

// writeTar streams c as a tar to w.
func writeTar(c *content, w io.Writer) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	tw := tar.NewWriter(bw)
	buf := make([]byte, 1<<20)
	err := c.each(func(e *entry) error {
		h := &tar.Header{
			Name: e.name, Mode: tarMode(e.mode), Uid: int(e.uid), Gid: int(e.gid), ModTime: e.mtime,
			Devmajor: int64(e.devmajor), Devminor: int64(e.devminor),
		}
		m := e.mode
		switch {
		case e.hardlink != "":
			h.Typeflag, h.Linkname = tar.TypeLink, e.hardlink
		case m.IsRegular():
			h.Typeflag, h.Size = tar.TypeReg, e.size
		case m.IsDir():
			h.Typeflag, h.Name = tar.TypeDir, e.name+"/"
		case m&fs.ModeSymlink != 0:
			h.Typeflag, h.Linkname = tar.TypeSymlink, e.linkname
		case m&fs.ModeCharDevice != 0:
			h.Typeflag = tar.TypeChar
		case m&fs.ModeDevice != 0:
			h.Typeflag = tar.TypeBlock
		case m&fs.ModeNamedPipe != 0:
			h.Typeflag = tar.TypeFifo
		default:
			return fmt.Errorf("tar %s: unsupported mode %v", e.name, m)
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if h.Typeflag != tar.TypeReg {
			return nil
		}
		r, err := body(e)
		if err != nil {
			return err
		}
		_, err = io.CopyBuffer(tw, r, buf)
		if cerr := r.Close(); err == nil {
			err = cerr
		}
		return err
	})
	if err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return bw.Flush()
}

// writeTar2ext4 converts c with hcsshim's tar2ext4, the tar being generated
// in a goroutine through an io.Pipe so that tar creation overlaps conversion.
func writeTar2ext4(c *content, out string) (err error) {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := writeTar(c, pw)
		pw.CloseWithError(err)
		done <- err
	}()
	err = tar2ext4.Convert(pr, f)
	pr.CloseWithError(errors.New("tar2ext4 stopped reading"))
	if terr := <-done; err == nil && terr != nil {
		err = terr
	}
	if err != nil {
		return err
	}
	return f.Sync()
}

// writeMkfs runs mkfs.ext4 -d on the materialised directory; mke2fs fsyncs
// the image when it closes it.
func writeMkfs(c *content, out string) error {
	args := append([]string{"-q", "-F", "-d", c.dir, "-E", "root_owner=0:0"}, c.mkfs[:len(c.mkfs)-1]...)
	args = append(args, out, c.mkfs[len(c.mkfs)-1])
	cmd := exec.Command("mkfs.ext4", args...)
	if outb, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("mkfs.ext4 %s: %v: %s", strings.Join(args, " "), err, outb)
	}
	return nil
}

// writeRaw writes the 1 GiB of content B to a plain file in 1 MiB chunks
// and syncs it: the sequential write speed of this disk.
func writeRaw(c *content, out string) (err error) {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	err = c.each(func(e *entry) error {
		for p := e.data; len(p) > 0; {
			n := min(len(p), 1<<20)
			if _, err := f.Write(p[:n]); err != nil {
				return err
			}
			p = p[n:]
		}
		return nil
	})
	if err != nil {
		return err
	}
	return f.Sync()
}

// fsck runs e2fsck -fn on out and logs its verdict.
func fsck(b *testing.B, out string) {
	if _, err := exec.LookPath("e2fsck"); err != nil {
		b.Logf("e2fsck not found: %v", err)
		return
	}
	outb, err := exec.Command("e2fsck", "-fn", out).CombinedOutput()
	if err != nil {
		b.Errorf("e2fsck -fn: %v\n%s", err, outb)
		return
	}
	lines := strings.Split(strings.TrimSpace(string(outb)), "\n")
	b.Logf("e2fsck -fn: clean (exit 0): %s", lines[len(lines)-1])
}

func run(b *testing.B, load func(*testing.B) *content, writers []string) {
	all := map[string]writeFunc{
		"ext4writer": writeOurs,
		"tar2ext4":   writeTar2ext4,
		"mkfs":       writeMkfs,
		"raw":        writeRaw,
	}
	for _, name := range writers {
		b.Run(name, func(b *testing.B) {
			if name == "mkfs" {
				if _, err := exec.LookPath("mkfs.ext4"); err != nil {
					b.Skipf("mkfs.ext4 not found: %v", err)
				}
			}
			c := load(b)
			out := filepath.Join(b.TempDir(), "out.img")
			b.ReportAllocs()
			b.SetBytes(c.bytes)
			for b.Loop() {
				b.StopTimer()
				if err := os.Remove(out); err != nil && !errors.Is(err, fs.ErrNotExist) {
					b.Fatal(err)
				}
				b.StartTimer()
				if err := all[name](c, out); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if fi, err := os.Stat(out); err == nil {
				b.ReportMetric(float64(fi.Size())/(1<<20), "image-MiB")
			}
			if name == "ext4writer" {
				fsck(b, out)
			}
		})
	}
}

// BenchmarkSmallFiles is content A: 100,000 files of 100 to 200 bytes in one directory.
func BenchmarkSmallFiles(b *testing.B) {
	run(b, smallFiles, []string{"ext4writer", "tar2ext4", "mkfs"})
}

// BenchmarkBigFile is content B: one 1 GiB file, plus the raw sequential write of the same bytes.
func BenchmarkBigFile(b *testing.B) {
	run(b, bigFile, []string{"ext4writer", "tar2ext4", "mkfs", "raw"})
}

// BenchmarkDebian is content C: a debootstrap minbase bookworm tree.
func BenchmarkDebian(b *testing.B) {
	run(b, debian, []string{"ext4writer", "tar2ext4", "mkfs"})
}
