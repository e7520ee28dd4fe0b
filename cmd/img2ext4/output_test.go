package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// loopDevice attaches file to a free loop device (read-only when ro) and returns a private
// block node for it made in dir, so that a bug can never replace a node under /dev. The
// caller has checked for root and losetup.
func loopDevice(t *testing.T, file, dir string, ro bool) string {
	t.Helper()
	args := []string{"-f", "--show", file}
	if ro {
		args = append([]string{"-r"}, args...)
	}
	var dev []byte
	var err error
	for range 5 { // another process may take the free device first
		if dev, err = exec.Command("losetup", args...).Output(); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("losetup %s: %v", file, err)
	}
	path := strings.TrimSpace(string(dev))
	t.Cleanup(func() { exec.Command("losetup", "-d", path).Run() })
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	node := filepath.Join(dir, filepath.Base(path))
	if err := unix.Mknod(node, unix.S_IFBLK|0o600, int(st.Rdev)); err != nil {
		t.Fatal(err)
	}
	return node
}

// needRootTools skips unless the test runs as root and finds the tools it names.
func needRootTools(t *testing.T, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to set up loop devices and device nodes")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found", tool)
		}
	}
}

func fileHash(t *testing.T, path string, off, n int64) [32]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, off, n)); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

func isBlock(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode().Type() != fs.ModeDevice {
		t.Fatalf("%s is no longer a block device: %v %v", path, fi.Mode(), err)
	}
}

// TestBlockDevice writes an image into a real loop device, whose backing file starts full
// of non-zero bytes: the node stays a block device, e2fsck finds the filesystem clean, its
// bytes equal the file output of the same size (so every block the filesystem does not use
// reads back zeros) and the bytes past --size are untouched. A mounted device, a device
// holding a mounted partition, a read-only device, a size larger than the device and
// extra free space are refused with exit 2, leaving the device as it was.
func TestBlockDevice(t *testing.T) {
	needRootTools(t, "losetup", "e2fsck", "mount", "umount")
	dir := t.TempDir()
	const devSize, fsSize = 40 << 20, 32 << 20
	backing := filepath.Join(dir, "backing")
	if err := os.WriteFile(backing, bytes.Repeat([]byte{0xa5}, devSize), 0o600); err != nil {
		t.Fatal(err)
	}
	node := loopDevice(t, backing, dir, false)
	link := filepath.Join(dir, "by-id")
	os.Symlink(node, link)
	tail := fileHash(t, backing, fsSize, devSize-fsSize)

	code, _, errOut := runCLI(t, "", "-q", "--size", "32M", "oci:"+hello, link)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	isBlock(t, node)
	if fi, err := os.Lstat(link); err != nil || fi.Mode().Type() != fs.ModeSymlink {
		t.Fatalf("the symbolic link was replaced: %v %v", fi.Mode(), err)
	}
	if out, err := exec.Command("e2fsck", "-fn", node).CombinedOutput(); err != nil {
		t.Fatalf("e2fsck -fn: %v\n%s", err, out)
	}
	file := filepath.Join(dir, "file.img")
	if code, _, errOut := runCLI(t, "", "-q", "--size", "32M", "oci:"+hello, file); code != 0 {
		t.Fatalf("file output: exit %d: %s", code, errOut)
	}
	if fileHash(t, node, 0, fsSize) != fileHash(t, file, 0, fsSize) {
		t.Error("the device holds other bytes than the file output of the same size")
	}
	if fileHash(t, backing, fsSize, devSize-fsSize) != tail {
		t.Error("bytes past the filesystem changed")
	}

	// Without --size the filesystem fills the device.
	if code, _, errOut := runCLI(t, "", "-q", "oci:"+hello, node); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	out, err := exec.Command("e2fsck", "-fn", node).CombinedOutput()
	if err != nil {
		t.Fatalf("e2fsck -fn: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "/10240 blocks") {
		t.Errorf("the filesystem does not fill the 40 MiB device: %s", out)
	}

	before := fileHash(t, backing, 0, devSize)
	refused := func(t *testing.T, want string, args ...string) {
		t.Helper()
		code, _, errOut := runCLI(t, "", append([]string{"-q"}, args...)...)
		if code != 2 || !strings.Contains(errOut, want) {
			t.Errorf("exit %d, want 2 and %q: %s", code, want, errOut)
		}
		isBlock(t, node)
		if fileHash(t, backing, 0, devSize) != before {
			t.Error("the refused device was written")
		}
	}
	t.Run("size larger than the device", func(t *testing.T) {
		refused(t, "larger than the device", "--size", "64M", "oci:"+hello, node)
	})
	t.Run("extra free space", func(t *testing.T) {
		refused(t, "does not apply to a block device", "--free", "10M", "oci:"+hello, node)
	})
	t.Run("tar into a block device", func(t *testing.T) {
		refused(t, "takes --format ext4", "--format", "tar", "oci:"+hello, node)
	})
	t.Run("mounted", func(t *testing.T) {
		mnt := filepath.Join(dir, "mnt")
		os.Mkdir(mnt, 0o755)
		if out, err := exec.Command("mount", "-o", "ro", node, mnt).CombinedOutput(); err != nil {
			t.Fatalf("mount: %v\n%s", err, out)
		}
		defer exec.Command("umount", mnt).Run()
		refused(t, "is mounted at "+mnt, "oci:"+hello, node)
		refused(t, "is mounted at "+mnt, "oci:"+hello, link)
	})
	t.Run("read-only", func(t *testing.T) {
		ro := loopDevice(t, backing, t.TempDir(), true)
		refused(t, "not writable", "oci:"+hello, ro)
	})
}

// TestBlockDevicePartitions refuses a whole disk one of whose partitions is mounted, and a
// partition whose disk is mounted.
func TestBlockDevicePartitions(t *testing.T) {
	needRootTools(t, "losetup", "mount", "umount")
	dir := t.TempDir()
	backing := filepath.Join(dir, "disk")
	// A DOS partition table with two 8 MiB Linux partitions, from sector 2048 on.
	mbr := make([]byte, 512)
	for i, start := range []uint32{2048, 2048 + 16384} {
		e := mbr[446+16*i:]
		e[4] = 0x83
		binary.LittleEndian.PutUint32(e[8:], start)
		binary.LittleEndian.PutUint32(e[12:], 16384)
	}
	mbr[510], mbr[511] = 0x55, 0xaa
	if err := os.WriteFile(backing, mbr, 0o600); err != nil {
		t.Fatal(err)
	}
	os.Truncate(backing, 24<<20)
	dev, err := exec.Command("losetup", "-P", "-f", "--show", backing).Output()
	if err != nil {
		t.Fatalf("losetup -P: %v", err)
	}
	disk := strings.TrimSpace(string(dev))
	t.Cleanup(func() { exec.Command("losetup", "-d", disk).Run() })
	var st unix.Stat_t
	if err := unix.Stat(disk+"p1", &st); err != nil {
		t.Skipf("the kernel found no partitions on %s (no DOS partition support?): %v", disk, err)
	}
	p1 := filepath.Join(dir, "p1")
	unix.Mknod(p1, unix.S_IFBLK|0o600, int(st.Rdev))
	unix.Stat(disk, &st)
	whole := filepath.Join(dir, "disk-node")
	unix.Mknod(whole, unix.S_IFBLK|0o600, int(st.Rdev))

	if code, _, errOut := runCLI(t, "", "-q", "oci:"+hello, p1); code != 0 {
		t.Fatalf("write partition: exit %d: %s", code, errOut)
	}
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	if out, err := exec.Command("mount", "-o", "ro", p1, mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount: %v\n%s", err, out)
	}
	defer exec.Command("umount", mnt).Run()
	before := fileHash(t, backing, 0, 24<<20)
	code, _, errOut := runCLI(t, "", "-q", "oci:"+hello, whole)
	if code != 2 || !strings.Contains(errOut, "shares the disk, is mounted at "+mnt) {
		t.Errorf("whole disk with a mounted partition: exit %d: %s", code, errOut)
	}
	if fileHash(t, backing, 0, 24<<20) != before {
		t.Error("the disk was written")
	}
}

// TestStreamOutputs streams tar into a FIFO and into character devices, which stay what
// they are; the ext4 and dir formats refuse them with exit 2.
func TestStreamOutputs(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	got := make(chan []byte)
	go func() {
		b, _ := os.ReadFile(fifo)
		got <- b
	}()
	code, _, errOut := runCLI(t, "", "-q", "--format", "tar", "oci:"+hello, fifo)
	if code != 0 {
		t.Fatalf("tar into a FIFO: exit %d: %s", code, errOut)
	}
	if b := <-got; !bytes.Contains(b, []byte("echo hello again")) {
		t.Errorf("the FIFO's reader got %d bytes without the merged files", len(b))
	}
	if fi, err := os.Lstat(fifo); err != nil || fi.Mode().Type() != fs.ModeNamedPipe {
		t.Fatalf("the FIFO was replaced: %v %v", fi.Mode(), err)
	}
	for format, want := range map[string]string{"ext4": "A character device or FIFO takes --format tar only.", "dir": "is not a directory"} {
		code, _, errOut := runCLI(t, "", "-q", "--format", format, "oci:"+hello, fifo)
		if code != 2 || !strings.Contains(errOut, fifo) || !strings.Contains(errOut, want) {
			t.Errorf("--format %s into a FIFO: exit %d, want 2 and %q: %s", format, code, want, errOut)
		}
	}

	if os.Geteuid() != 0 {
		t.Skip("needs root to make a character device; the rest runs /dev/null only after it")
	}
	null := filepath.Join(dir, "null")
	if err := unix.Mknod(null, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{null, "/dev/null"} {
		if code, _, errOut := runCLI(t, "", "-q", "--format", "tar", "oci:"+hello, out); code != 0 {
			t.Fatalf("tar into %s: exit %d: %s", out, code, errOut)
		}
		code, _, errOut := runCLI(t, "", "-q", "oci:"+hello, out)
		if code != 2 || !strings.Contains(errOut, "takes --format tar only") {
			t.Errorf("ext4 into %s: exit %d: %s", out, code, errOut)
		}
		if fi, err := os.Lstat(out); err != nil || fi.Mode().Type() != fs.ModeDevice|fs.ModeCharDevice {
			t.Fatalf("%s is no longer a character device: %v %v", out, fi.Mode(), err)
		}
	}
}

// TestDirTargets writes --format dir into a new directory, an existing empty one (with and
// without a trailing slash, through a symbolic link) and refuses a non-empty one or a file.
func TestDirTargets(t *testing.T) {
	check := func(t *testing.T, dir string) {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, "usr/bin/hello"))
		if err != nil || string(b) != "#!/bin/sh\necho hello again\n" {
			t.Errorf("usr/bin/hello = %q, %v", b, err)
		}
		entries, _ := os.ReadDir(filepath.Dir(dir))
		for _, e := range entries {
			if strings.Contains(e.Name(), ".img2ext4-") {
				t.Errorf("temporary %s left beside the output", e.Name())
			}
		}
		inner, _ := os.ReadDir(dir)
		for _, e := range inner {
			if strings.Contains(e.Name(), "img2ext4") {
				t.Errorf("temporary %s left inside the output", e.Name())
			}
		}
	}
	cases := []struct {
		name  string
		setup func(t *testing.T, base string) (arg, dir string)
	}{
		{"new", func(t *testing.T, base string) (string, string) {
			return filepath.Join(base, "new"), filepath.Join(base, "new")
		}},
		{"empty", func(t *testing.T, base string) (string, string) {
			d := filepath.Join(base, "empty")
			os.Mkdir(d, 0o700)
			return d, d
		}},
		{"empty with slash", func(t *testing.T, base string) (string, string) {
			d := filepath.Join(base, "slash")
			os.Mkdir(d, 0o700)
			return d + "/", d
		}},
		{"symlink to empty", func(t *testing.T, base string) (string, string) {
			d := filepath.Join(base, "real")
			os.Mkdir(d, 0o700)
			os.Symlink(d, filepath.Join(base, "link"))
			return filepath.Join(base, "link") + "/", d
		}},
		{"empty in a read-only parent", func(t *testing.T, base string) (string, string) {
			p := filepath.Join(base, "ro")
			d := filepath.Join(p, "rootfs")
			os.MkdirAll(d, 0o755)
			os.Chmod(p, 0o555)
			t.Cleanup(func() { os.Chmod(p, 0o755) })
			if os.Geteuid() == 0 {
				// Root writes anywhere; a mount point forces the same path.
				if err := exec.Command("mount", "-t", "tmpfs", "tmpfs", d).Run(); err != nil {
					t.Skipf("mount tmpfs: %v", err)
				}
				t.Cleanup(func() { exec.Command("umount", d).Run() })
			}
			return d, d
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			arg, dir := tc.setup(t, t.TempDir())
			code, _, errOut := runCLI(t, "", "-q", "--format", "dir", "oci:"+hello, arg)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			check(t, dir)
			if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o755 {
				t.Errorf("root directory mode %v, %v; want the image's 0755", fi.Mode(), err)
			}
		})
	}
	t.Run("refused", func(t *testing.T) {
		base := t.TempDir()
		full := filepath.Join(base, "full")
		os.Mkdir(full, 0o755)
		os.WriteFile(filepath.Join(full, "x"), nil, 0o644)
		file := filepath.Join(base, "file")
		os.WriteFile(file, nil, 0o644)
		for arg, want := range map[string]string{full: "not empty", full + "/": "not empty", file: "not a directory"} {
			code, _, errOut := runCLI(t, "", "-q", "--format", "dir", "oci:"+hello, arg)
			if code != 2 || !strings.Contains(errOut, want) {
				t.Errorf("%s: exit %d, want 2 and %q: %s", arg, code, want, errOut)
			}
		}
	})
}

// TestLocalPathCLI converts a local OCI layout named by its path alone, and refuses a
// missing local path and an ambiguous bare name with exit 2 and the transport to write.
func TestLocalPathCLI(t *testing.T) {
	out := filepath.Join(t.TempDir(), "rootfs")
	if code, _, errOut := runCLI(t, "", "-q", "--format", "dir", hello, out); code != 0 {
		t.Fatalf("%s: exit %d: %s", hello, code, errOut)
	}
	if _, err := os.Stat(filepath.Join(out, "usr/bin/hello")); err != nil {
		t.Error(err)
	}
	t.Chdir(filepath.Dir(hello))
	for src, want := range map[string]string{
		"./missing-oci": "local image ./missing-oci: no such file or directory (a local image is an OCI layout directory (oci:DIR[:TAG])",
		"hello-oci":     "write oci:hello-oci (or ./hello-oci) for the local one, docker://hello-oci for the registry",
	} {
		code, _, errOut := runCLI(t, "", "-q", "--format", "tar", src, "-")
		if code != 2 || !strings.Contains(errOut, want) {
			t.Errorf("%s: exit %d, want 2 and %q: %s", src, code, want, errOut)
		}
	}
}
