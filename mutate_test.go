package img2ext4_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/img2ext4/img2ext4"
	"github.com/img2ext4/img2ext4/internal/tartest"
	"github.com/img2ext4/img2ext4/layerapply"
)

// layoutOf writes an image of the given layers to a new OCI layout and returns its
// reference.
func layoutOf(t *testing.T, layers ...[]byte) string {
	t.Helper()
	lay := filepath.Join(t.TempDir(), "layout")
	p, err := layout.Write(lay, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(tartest.Image(layers...)); err != nil {
		t.Fatal(err)
	}
	return "oci:" + lay
}

var formats = []img2ext4.Format{img2ext4.FormatExt4, img2ext4.FormatDir, img2ext4.FormatTar}

// convertTo converts ref to format in a new directory and returns a host directory holding
// the output's tree: the directory itself, GNU tar's extraction of the tar, or debugfs's
// rdump of the ext4 image after e2fsck -fn found it clean.
func convertTo(t *testing.T, ref string, format img2ext4.Format, opts ...img2ext4.Option) (string, error) {
	t.Helper()
	tmp := t.TempDir()
	out := filepath.Join(tmp, "out")
	opts = append(opts, img2ext4.WithFormat(format))
	if format == img2ext4.FormatExt4 {
		opts = append(opts, img2ext4.WithExt4(img2ext4.Ext4Options{Align: 4096}))
	}
	if _, err := img2ext4.Convert(context.Background(), ref, out, opts...); err != nil {
		return "", err
	}
	tree := filepath.Join(tmp, "tree")
	switch format {
	case img2ext4.FormatDir:
		return out, nil
	case img2ext4.FormatTar:
		os.Mkdir(tree, 0o755)
		if b, err := exec.Command(needTool(t, "tar"), "-xpf", out, "-C", tree).CombinedOutput(); err != nil {
			t.Fatalf("tar -x: %v\n%s", err, b)
		}
	case img2ext4.FormatExt4:
		fsck(t, out)
		os.Mkdir(tree, 0o755)
		if b, err := exec.Command(needTool(t, "debugfs"), "-R", "rdump / "+tree, out).CombinedOutput(); err != nil {
			t.Fatalf("debugfs rdump: %v\n%s", err, b)
		}
	}
	return tree, nil
}

// hostState records what the escapes could touch on the host: the files below dir, and
// /etc/passwd.
func hostState(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		info, _ := d.Info()
		st := info.Sys().(*syscall.Stat_t)
		fmt.Fprintf(&b, "%s %v %v links=%d\n", p, info.Mode(), time.Unix(st.Mtim.Unix()), st.Nlink)
		if info.Mode().IsRegular() {
			c, _ := os.ReadFile(p)
			b.Write(c)
		}
		return nil
	})
	b.WriteString(sha(t, "/etc/passwd"))
	return b.String()
}

// TestMutateConfined runs a table of root-escape attempts through WithMutate into every
// output: each name must resolve inside the image, the output must hold the result there,
// and nothing on the host may change.
func TestMutateConfined(t *testing.T) {
	host := t.TempDir() // an absolute host path the image's links aim at
	if err := os.WriteFile(filepath.Join(host, "secret"), []byte("host secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hostRel := strings.TrimPrefix(host, "/")
	climb := strings.Repeat("../", 12)
	ref := layoutOf(t, tartest.Tar(
		tartest.Dir("etc"),
		tartest.File("etc/passwd", "image passwd\n"),
		tartest.Symlink("hostetc", "/etc"),
		tartest.Symlink("hostdir", host),
		tartest.Symlink("up", climb+hostRel),
		tartest.Symlink("loop1", "loop2"),
		tartest.Symlink("loop2", "loop1"),
		tartest.Dir("usr"),
		tartest.Dir("usr/lib"),
		tartest.Symlink("lib", "usr/lib"),
		tartest.Symlink("parent", ".."),
	))
	before := hostState(t, host)

	type attempt struct {
		name    string
		do      func(root layerapply.RootFS) error
		wantErr error // nil: must succeed
	}
	write := func(name, content string) func(layerapply.RootFS) error {
		return func(root layerapply.RootFS) error { return root.WriteFile(name, strings.NewReader(content), 0o644) }
	}
	attempts := []attempt{
		{"write through an absolute symlink to /etc", write("hostetc/passwd", "mutated\n"), nil},
		{"a .. chain through a symlink to /etc", write("/hostetc/../../../../etc/dotdot", "dotdot\n"), nil},
		{"a .. chain above the root to a host path whose parent the image lacks", write(climb+hostRel+"/new", "x"), fs.ErrNotExist},
		{"mkdir -p through an absolute symlink to a host directory", func(root layerapply.RootFS) error { return root.MkdirAll("hostdir/made", 0o755) }, nil},
		{"write through a relative symlink climbing above the root", write("up/via-up", "via up\n"), nil},
		{"write through a symlinked parent", write("lib/libfoo.so", "foo\n"), nil},
		{"write through a parent link to ..", write("parent/parent/at-root", "root\n"), nil},
		{"write through a symlink loop", write("loop1/x", "x"), syscall.ELOOP},
		{"stat a symlink loop", func(root layerapply.RootFS) error { _, err := root.Stat("loop1"); return err }, syscall.ELOOP},
		{"hard link to a host file", func(root layerapply.RootFS) error { return root.Link(host+"/secret", "stolen") }, fs.ErrNotExist},
		{"read through a symlink to a host file", func(root layerapply.RootFS) error {
			if err := root.Symlink(host+"/secret", "sym-secret"); err != nil {
				return err
			}
			_, err := root.Open("sym-secret")
			return err
		}, fs.ErrNotExist},
		{"write through a dangling absolute symlink", func(root layerapply.RootFS) error {
			if err := root.Symlink(host+"/dangling", "dang"); err != nil {
				return err
			}
			return root.WriteFile("dang", strings.NewReader("dangling\n"), 0o600)
		}, nil},
		{"read the image's file through an absolute symlink", func(root layerapply.RootFS) error {
			if err := root.Symlink("/etc/passwd", "usr/lib/pw"); err != nil {
				return err
			}
			f, err := root.Open("lib/pw")
			if err != nil {
				return err
			}
			defer f.Close()
			b, err := io.ReadAll(f)
			if err == nil && string(b) != "mutated\n" {
				err = errors.New("read " + string(b))
			}
			return err
		}, nil},
		{"hard link inside the image", func(root layerapply.RootFS) error { return root.Link("/hostetc/passwd", "passwd-link") }, nil},
		{"remove a symlink to a host directory", func(root layerapply.RootFS) error { return root.RemoveAll("hostdir") }, nil},
		{"remove through a symlinked parent", func(root layerapply.RootFS) error { return root.RemoveAll("hostetc/dotdot") }, nil},
		{"a new name over an existing one", func(root layerapply.RootFS) error { return root.Symlink("x", "etc/passwd") }, fs.ErrExist},
		{"write onto a directory", write("usr", "x"), syscall.EISDIR},
	}
	for _, format := range formats {
		t.Run(string(format), func(t *testing.T) {
			mutate := func(ctx context.Context, root layerapply.RootFS) error {
				for _, a := range attempts {
					err := a.do(root)
					switch {
					case a.wantErr == nil && err != nil:
						t.Errorf("%s: %v", a.name, err)
					case a.wantErr != nil && !errors.Is(err, a.wantErr):
						t.Errorf("%s: err = %v, want %v", a.name, err, a.wantErr)
					}
				}
				return nil
			}
			tree, err := convertTo(t, ref, format, img2ext4.WithMutate(mutate))
			if err != nil {
				t.Fatal(err)
			}
			for p, want := range map[string]string{
				"etc/passwd":          "mutated\n",
				"etc/dotdot":          "", // removed again
				"usr/lib/libfoo.so":   "foo\n",
				"at-root":             "root\n",
				hostRel + "/via-up":   "via up\n",
				hostRel + "/dangling": "dangling\n",
				"passwd-link":         "mutated\n",
				hostRel + "/made/":    "dir",
				"stolen":              "",
				"hostdir":             "",
				hostRel + "/secret":   "",
				hostRel + "/new":      "",
			} {
				p = filepath.Clean(p)
				got, err := os.ReadFile(filepath.Join(tree, p))
				switch {
				case want == "dir":
					if st, err := os.Stat(filepath.Join(tree, p)); err != nil || !st.IsDir() {
						t.Errorf("%s: want a directory in the output, got %v", p, err)
					}
				case want == "":
					if _, err := os.Lstat(filepath.Join(tree, p)); !errors.Is(err, fs.ErrNotExist) {
						t.Errorf("%s: exists in the output, want it absent", p)
					}
				case err != nil || string(got) != want:
					t.Errorf("%s = %q, %v; want %q", p, got, err, want)
				}
			}
			if l, err := os.Readlink(filepath.Join(tree, "hostetc")); err != nil || l != "/etc" {
				t.Errorf("hostetc -> %q, %v; want the link kept as /etc", l, err)
			}
			if after := hostState(t, host); after != before {
				t.Errorf("the host changed:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

// TestMutateFailureLeavesNothing checks that a mutation's error aborts the conversion of
// every format and leaves nothing beside the output, not even a temporary file.
func TestMutateFailureLeavesNothing(t *testing.T) {
	ref := layoutOf(t, tartest.Tar(tartest.File("a", "a\n")))
	boom := errors.New("boom")
	for _, format := range formats {
		t.Run(string(format), func(t *testing.T) {
			dir := t.TempDir()
			ran := 0
			_, err := img2ext4.Convert(context.Background(), ref, filepath.Join(dir, "out"), img2ext4.WithFormat(format),
				img2ext4.WithMutate(func(ctx context.Context, root layerapply.RootFS) error {
					ran++
					return root.WriteFile("b", strings.NewReader("b\n"), 0o644)
				}),
				img2ext4.WithMutate(func(ctx context.Context, root layerapply.RootFS) error {
					ran++
					if _, err := root.Stat("b"); err != nil {
						return err // the first mutation ran before this one
					}
					return boom
				}))
			if !errors.Is(err, boom) || ran != 2 {
				t.Fatalf("err = %v after %d mutations, want boom after 2", err, ran)
			}
			if left, _ := os.ReadDir(dir); len(left) != 0 {
				t.Errorf("left behind: %v", left)
			}
		})
	}
}

// TestMutateMetadata changes owners, modes, times and extended attributes through RootFS
// and reads them back through RootFS and from the tar output.
func TestMutateMetadata(t *testing.T) {
	mtime := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	ref := layoutOf(t, tartest.Tar(
		tartest.Dir("etc", tartest.Mode(0o755)),
		tartest.File("etc/conf", "old\n", tartest.Mode(0o640), tartest.Owner(7, 8), tartest.Mtime(mtime)),
	))
	for _, format := range formats {
		t.Run(string(format), func(t *testing.T) {
			var got []string
			mutate := func(ctx context.Context, root layerapply.RootFS) error {
				// Replacing a file keeps its mode, owner and times.
				if err := root.WriteFile("etc/conf", bytes.NewReader([]byte("new content\n")), 0o600); err != nil {
					return err
				}
				info, err := root.Stat("/etc/conf")
				if err != nil {
					return err
				}
				e := info.Sys().(*layerapply.Entry)
				uid, gid := 7, 8
				if format == img2ext4.FormatDir && os.Geteuid() != 0 {
					// Without root a directory cannot keep owners; the dir sink counts them.
					uid, gid = os.Geteuid(), os.Getegid()
				}
				if info.Mode() != 0o640 || info.Size() != 12 || e.UID != uid || e.GID != gid || !e.ModTime.Equal(mtime) {
					t.Errorf("after WriteFile: mode %v size %d owner %d:%d mtime %v", info.Mode(), info.Size(), e.UID, e.GID, e.ModTime)
				}
				if err := root.MkdirAll("/opt/tool/bin", 0o750); err != nil {
					return err
				}
				if err := root.WriteFile("/opt/tool/bin/run", strings.NewReader("#!/bin/sh\n"), 0o755|fs.ModeSetuid); err != nil {
					return err
				}
				if err := root.Chown("/opt/tool/bin/run", 1000, 1001); err != nil {
					return err
				}
				if err := root.Setxattr("/opt/tool/bin/run", "user.tag", []byte("v1")); err != nil {
					return err
				}
				if err := root.Chtimes("/opt/tool/bin/run", mtime, mtime); err != nil {
					return err
				}
				if err := root.Chmod("/etc", 0o700); err != nil {
					return err
				}
				ents, err := root.ReadDir("/opt/tool/bin")
				if err != nil {
					return err
				}
				for _, d := range ents {
					got = append(got, d.Name())
				}
				return nil
			}
			tree, err := convertTo(t, ref, format, img2ext4.WithMutate(mutate))
			if err != nil {
				t.Fatal(err)
			}
			if format == img2ext4.FormatExt4 {
				// debugfs's rdump drops setuid bits and owners: read them with stat.
				b, err := exec.Command(needTool(t, "debugfs"), "-R", "stat /opt/tool/bin/run", filepath.Join(filepath.Dir(tree), "out")).CombinedOutput()
				for _, want := range []string{"Mode:  04755", "User:  1000   Group:  1001", `user.tag (2) = "v1"`} {
					if err != nil || !strings.Contains(string(b), want) {
						t.Errorf("debugfs stat run: want %q in\n%s", want, b)
					}
				}
			}
			if strings.Join(got, ",") != "run" {
				t.Errorf("ReadDir = %v", got)
			}
			if b, err := os.ReadFile(filepath.Join(tree, "etc/conf")); err != nil || string(b) != "new content\n" {
				t.Errorf("etc/conf = %q, %v", b, err)
			}
			st, err := os.Stat(filepath.Join(tree, "opt/tool/bin/run"))
			if err != nil {
				t.Fatal(err)
			}
			if format != img2ext4.FormatExt4 && st.Mode() != 0o755|fs.ModeSetuid {
				t.Errorf("run: mode %v, want %v", st.Mode(), 0o755|fs.ModeSetuid)
			}
			if !st.ModTime().Equal(mtime.Truncate(time.Second)) && !st.ModTime().Equal(mtime) {
				t.Errorf("run: mtime %v, want %v", st.ModTime(), mtime)
			}
		})
	}
	// The tar shows owners and attributes as written, without needing root to read them.
	out := filepath.Join(t.TempDir(), "out.tar")
	if _, err := img2ext4.Convert(context.Background(), ref, out, img2ext4.WithFormat(img2ext4.FormatTar),
		img2ext4.WithMutate(func(ctx context.Context, root layerapply.RootFS) error {
			if err := root.WriteFile("run", strings.NewReader("x"), 0o755); err != nil {
				return err
			}
			if err := root.Chown("run", 1000, 1001); err != nil {
				return err
			}
			return root.Setxattr("run", "user.tag", []byte("v1"))
		})); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("no run in the tar: %v", err)
		}
		if h.Name == "run" {
			if h.Uid != 1000 || h.Gid != 1001 || h.PAXRecords["SCHILY.xattr.user.tag"] != "v1" || h.Mode != 0o755 {
				t.Errorf("run: %d:%d mode %o records %v", h.Uid, h.Gid, h.Mode, h.PAXRecords)
			}
			break
		}
	}
}

// TestAddOntoDirectory checks --add's rule for an existing directory: a directory merges
// into it, keeping its metadata; anything else is refused and leaves no output.
func TestAddOntoDirectory(t *testing.T) {
	ref := layoutOf(t, tartest.Tar(tartest.Dir("etc", tartest.Mode(0o755)), tartest.File("etc/passwd", "image passwd\n")))
	src := t.TempDir() // 0700 on the host
	if err := os.WriteFile(filepath.Join(src, "extra.conf"), []byte("extra\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, format := range formats {
		t.Run(string(format), func(t *testing.T) {
			tree, err := convertTo(t, ref, format, img2ext4.WithAdd(img2ext4.Add{Src: src, Dst: "/etc"}))
			if err != nil {
				t.Fatal(err)
			}
			for p, want := range map[string]string{"etc/passwd": "image passwd\n", "etc/extra.conf": "extra\n"} {
				if b, err := os.ReadFile(filepath.Join(tree, p)); err != nil || string(b) != want {
					t.Errorf("%s = %q, %v; want %q", p, b, err, want)
				}
			}
			if format != img2ext4.FormatExt4 { // rdump does not keep directory modes
				if st, err := os.Stat(filepath.Join(tree, "etc")); err != nil || st.Mode().Perm() != 0o755 {
					t.Errorf("etc: %v, %v; want the image's 0755 kept", st.Mode(), err)
				}
			}

			dir := t.TempDir()
			_, err = img2ext4.Convert(context.Background(), ref, filepath.Join(dir, "out"), img2ext4.WithFormat(format),
				img2ext4.WithAdd(img2ext4.Add{Src: filepath.Join(src, "extra.conf"), Dst: "/etc"}))
			if err == nil || !strings.Contains(err.Error(), "is a directory in the image") {
				t.Fatalf("a file onto /etc: err = %v, want a refusal", err)
			}
			if left, _ := os.ReadDir(dir); len(left) != 0 {
				t.Errorf("left behind: %v", left)
			}
		})
	}
}

// TestMutateExt4ReusesBlocks replaces a file through RootFS: the ext4 image must be clean
// and hold none of the old body, whose blocks the new one reuses, as with layers.
func TestMutateExt4ReusesBlocks(t *testing.T) {
	old := bytes.Repeat([]byte("OLD-BODY-MARKER!"), 64<<10/16*8) // 512 KiB
	ref := layoutOf(t, tartest.Tar(tartest.File("big", string(old))))
	out := filepath.Join(t.TempDir(), "out.img")
	_, err := img2ext4.Convert(context.Background(), ref, out, img2ext4.WithExt4(img2ext4.Ext4Options{Align: 4096}),
		img2ext4.WithMutate(func(ctx context.Context, root layerapply.RootFS) error {
			return root.WriteFile("big", bytes.NewReader(bytes.Repeat([]byte("new body bytes.."), len(old)/16)), 0o644)
		}))
	if err != nil {
		t.Fatal(err)
	}
	fsck(t, out)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte("OLD-BODY-MARKER!")) {
		t.Error("the image still holds the replaced body")
	}
	if !bytes.Contains(b, []byte("new body bytes..")) {
		t.Error("the image lacks the new body")
	}
}
