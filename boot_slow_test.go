//go:build slow

package img2ext4_test

import (
	"bytes"
	"context"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/img2ext4/img2ext4"
	"github.com/img2ext4/img2ext4/internal/tartest"
)

// The boot test runs with
//
//	go test -tags slow -run Boot -v .
//
// and skips unless it finds a static busybox to put in the image, qemu, a kernel with its
// initrd, and e2fsprogs. On Debian 12:
//
//	apt-get install --no-install-recommends busybox-static qemu-system-x86 \
//		linux-image-amd64 initramfs-tools e2fsprogs
//
// The environment variables below override where they are looked for. A boot takes 10–40 s
// under TCG.
const (
	envBusybox = "IMG2EXT4_BOOT_BUSYBOX" // default /bin/busybox (Debian's busybox-static)
	envKernel  = "IMG2EXT4_BOOT_KERNEL"  // default the newest readable /boot/vmlinuz-*
	envInitrd  = "IMG2EXT4_BOOT_INITRD"  // default /boot/initrd.img-<version of the kernel>
	envAccel   = "IMG2EXT4_BOOT_ACCEL"   // default tcg; kvm where nested virtualisation works

	bootTimeout = 120 * time.Second
)

// What /init prints on the console, and what it writes into the image.
const (
	markBoot    = "IMG2EXT4-BOOT-OK"
	markMarker  = "marker from layer 2"
	markGone    = "IMG2EXT4-WHITEOUT-OK"
	markOpaque  = "IMG2EXT4-OPAQUE-OK"
	markDone    = "IMG2EXT4-SYNCED"
	writtenInVM = "written in the vm"
)

// bootInit is the image's /init: it runs as PID 1 on the converted filesystem, mounted
// read-write by the initrd, with the console on the serial port. It reports what it sees,
// writes a file, remounts the root read-only so the journal is clean, and powers off. If
// anything makes it exit, the kernel panics and, with panic=-1 and -no-reboot, qemu exits.
const bootInit = `#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
echo ` + markBoot + `
cat /etc/marker
if [ -e /etc/doomed ] || [ -L /bin/doomed-link ]; then echo IMG2EXT4-WHITEOUT-FAILED; else echo ` + markGone + `; fi
if [ -e /etc/opq/lower ] || [ ! -e /etc/opq/upper ]; then echo IMG2EXT4-OPAQUE-FAILED; else echo ` + markOpaque + `; fi
echo '` + writtenInVM + `' > /written-in-vm
sync
mount -o remount,ro / && echo ` + markDone + `
poweroff -f
echo o > /proc/sysrq-trigger
`

// TestBoot converts a two-layer image to ext4 and boots it under qemu with Debian's kernel:
// the image's own shell and busybox run as init, see the upper layer's files and not the
// whited-out ones, write a file and power off; afterwards e2fsck must still find the image
// clean and debugfs must read back what the VM wrote.
//
// The "mkfs.ext4" case boots the same tree packed by mkfs.ext4 -d. It is the control: if
// it fails too, the harness (kernel, initrd, qemu) is at fault, not the ext4 writer.
func TestBoot(t *testing.T) {
	vm := findVM(t)
	ref := writeLayout(t, bootImage(t))

	for _, tc := range []struct {
		name  string
		build func(t *testing.T, ctx context.Context, ref, out string)
	}{
		{"img2ext4", makeExt4},
		{"mkfs.ext4", makeExt4WithMkfs},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			disk := filepath.Join(t.TempDir(), "root.ext4")
			tc.build(t, ctx, ref, disk)
			e2fsck(t, disk, "before boot")

			console, took := vm.boot(t, ctx, disk)
			t.Logf("boot with %s took %v", vm.accel, took.Round(100*time.Millisecond))

			lines := consoleLines(console)
			for _, want := range []string{markBoot, markMarker, markGone, markOpaque, markDone} {
				if !slices.Contains(lines, want) {
					t.Errorf("console has no line %q", want)
				}
			}
			if t.Failed() {
				t.Logf("console:\n%s", console)
			} else if i := slices.Index(lines, markBoot); i >= 0 {
				t.Logf("console from /init on:\n%s", strings.Join(lines[i:], "\n"))
			}

			e2fsck(t, disk, "after boot")
			got, err := exec.Command("debugfs", "-R", "cat /written-in-vm", disk).Output()
			if err != nil {
				t.Fatalf("debugfs cat /written-in-vm: %v", err)
			}
			if string(got) != writtenInVM+"\n" {
				t.Errorf("/written-in-vm = %q, want %q", got, writtenInVM+"\n")
			}
		})
	}
}

// makeExt4 converts ref to an ext4 image at out with the default shape, as users get it:
// the VM's write has to fit in the free space the default sizing leaves.
func makeExt4(t *testing.T, ctx context.Context, ref, out string) {
	t.Helper()
	if _, err := img2ext4.Convert(ctx, ref, out, img2ext4.WithFormat(img2ext4.FormatExt4)); err != nil {
		t.Fatalf("convert %s to ext4: %v", ref, err)
	}
}

// makeExt4WithMkfs converts ref to a directory and packs it with mkfs.ext4 -d.
func makeExt4WithMkfs(t *testing.T, ctx context.Context, ref, out string) {
	t.Helper()
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		t.Skip("mkfs.ext4 not found (install e2fsprogs)")
	}
	dir := filepath.Join(t.TempDir(), "rootfs")
	if _, err := img2ext4.Convert(ctx, ref, dir, img2ext4.WithFormat(img2ext4.FormatDir)); err != nil {
		t.Fatalf("convert %s to a directory: %v", ref, err)
	}
	cmd := exec.CommandContext(ctx, mkfs, "-q", "-F", "-d", dir, "-E", "root_owner=0:0", out, "64M")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, b)
	}
}

// e2fsck fails the test unless e2fsck -fn finds disk clean.
func e2fsck(t *testing.T, disk, when string) {
	t.Helper()
	b, err := exec.Command("e2fsck", "-fn", disk).CombinedOutput()
	if err != nil {
		t.Fatalf("e2fsck -fn %s: %v\n%s", when, err, b)
	}
}

// bootImage is a busybox system in two layers. The lower one holds busybox with a few
// applets as symlinks and one as a hard link, the usual mount points, device nodes, and
// files in /etc. The upper one replaces /etc/marker, whites out /etc/doomed and a symlink,
// makes /etc/opq opaque, and adds /init.
func bootImage(t *testing.T) v1.Image {
	t.Helper()
	busybox := staticBusybox(t)
	lower := []tartest.Entry{
		tartest.Dir("bin"),
		tartest.File("bin/busybox", string(busybox), tartest.Mode(0o755)),
		tartest.Link("bin/mount", "bin/busybox", tartest.Mode(0o755)),
		tartest.Symlink("bin/doomed-link", "busybox"),
	}
	for _, applet := range []string{"sh", "cat", "echo", "poweroff", "sync", "umount", "ls"} {
		lower = append(lower, tartest.Symlink("bin/"+applet, "busybox"))
	}
	lower = append(lower,
		tartest.Dir("dev"),
		tartest.Char("dev/console", 5, 1, tartest.Mode(0o600)),
		tartest.Char("dev/null", 1, 3, tartest.Mode(0o666)),
		tartest.Dir("etc"),
		tartest.File("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
		tartest.File("etc/group", "root:x:0:\n"),
		tartest.File("etc/marker", "marker from layer 1\n"),
		tartest.File("etc/doomed", "layer 2 whites this out\n"),
		tartest.Dir("etc/opq"),
		tartest.File("etc/opq/lower", "hidden by the opaque marker in layer 2\n"),
		tartest.Dir("proc", tartest.Mode(0o555)),
		tartest.Dir("root", tartest.Mode(0o700)),
		tartest.Dir("sys", tartest.Mode(0o555)),
		tartest.Dir("tmp", tartest.Mode(0o1777)),
	)
	upper := []tartest.Entry{
		tartest.Dir("bin"),
		tartest.Whiteout("bin/doomed-link"),
		tartest.Dir("etc"),
		tartest.Whiteout("etc/doomed"),
		tartest.File("etc/marker", markMarker+"\n"),
		tartest.Dir("etc/opq"),
		tartest.File("etc/opq/upper", "from layer 2\n"),
		tartest.Opaque("etc/opq"),
		tartest.File("init", bootInit, tartest.Mode(0o755)),
	}
	return tartest.Image(tartest.Tar(lower...), tartest.Tar(upper...))
}

// staticBusybox returns the busybox binary to put in the image, or skips the test if there
// is none or it is not statically linked (the image has no C library).
func staticBusybox(t *testing.T) []byte {
	t.Helper()
	path := os.Getenv(envBusybox)
	if path == "" {
		path = "/bin/busybox"
	}
	f, err := elf.Open(path)
	if err != nil {
		t.Skipf("no static busybox at %s (install busybox-static or set %s): %v", path, envBusybox, err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 {
		t.Skipf("%s is for %v, not x86-64", path, f.Machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Skipf("%s is dynamically linked (install busybox-static or set %s)", path, envBusybox)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Skip(err)
	}
	return b
}

// writeLayout writes img to an OCI layout in a temporary directory and returns its reference.
func writeLayout(t *testing.T, img v1.Image) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layout")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	return "oci:" + dir
}

// vm is what booting needs: qemu, a kernel with its initrd, and the accelerator to use.
type vm struct {
	qemu, kernel, initrd, accel string
}

// findVM finds qemu, the kernel and its initrd, or skips the test.
func findVM(t *testing.T) *vm {
	t.Helper()
	var v vm
	var err error
	if v.qemu, err = exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 not found (install qemu-system-x86)")
	}
	for _, tool := range []string{"e2fsck", "debugfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found (install e2fsprogs)", tool)
		}
	}
	v.kernel = os.Getenv(envKernel)
	if v.kernel == "" {
		// The newest kernel that can be read (Ubuntu's /boot/vmlinuz-* are root-only).
		kernels, _ := filepath.Glob("/boot/vmlinuz-*")
		slices.SortFunc(kernels, func(a, b string) int { return compareVersions(b, a) })
		for _, k := range kernels {
			if readable(k) {
				v.kernel = k
				break
			}
		}
		if v.kernel == "" {
			t.Skipf("no readable /boot/vmlinuz-* (install linux-image-amd64 or set %s)", envKernel)
		}
	} else if !readable(v.kernel) {
		t.Skipf("%s=%s is not readable", envKernel, v.kernel)
	}
	v.initrd = os.Getenv(envInitrd)
	if v.initrd == "" {
		v.initrd = filepath.Join(filepath.Dir(v.kernel), "initrd.img-"+strings.TrimPrefix(filepath.Base(v.kernel), "vmlinuz-"))
	}
	if !readable(v.initrd) {
		t.Skipf("no readable initrd %s for %s (install initramfs-tools or set %s)", v.initrd, v.kernel, envInitrd)
	}
	// TCG unless asked: a /dev/kvm that opens and creates VMs is no promise that guests
	// run (where this test was written, nested KVM hung right after the BIOS), and TCG boots in well under a minute.
	v.accel = os.Getenv(envAccel)
	if v.accel == "" {
		v.accel = "tcg"
	}
	return &v
}

// boot runs qemu on disk until the guest powers off and returns what it printed on the
// serial console and how long it took.
func (v *vm) boot(t *testing.T, ctx context.Context, disk string) (console string, took time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, bootTimeout)
	defer cancel()
	cmdline := "console=ttyS0 root=/dev/vda rootfstype=ext4 rw init=/init panic=-1 fsck.mode=skip"
	cmd := exec.CommandContext(ctx, v.qemu,
		"-accel", v.accel,
		"-m", "512",
		"-nographic", "-serial", "stdio", "-monitor", "none",
		"-nic", "none",
		"-no-reboot",
		"-kernel", v.kernel, "-initrd", v.initrd,
		"-append", cmdline,
		"-drive", "file="+disk+",format=raw,if=virtio",
	)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err := cmd.Run()
	took = time.Since(start)
	if ctx.Err() != nil {
		t.Fatalf("qemu did not exit within %v:\n%s", bootTimeout, out.String())
	}
	if err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, out.String())
	}
	return out.String(), took
}

// consoleLines splits serial output into lines without their carriage returns.
func consoleLines(s string) []string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, "\r")
	}
	return lines
}

func readable(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

// compareVersions orders kernel file names like "vmlinuz-6.1.0-9-amd64" < "vmlinuz-6.1.0-10-amd64"
// by comparing runs of digits as numbers.
func compareVersions(a, b string) int {
	for a != "" && b != "" {
		da, db := digitRun(a), digitRun(b)
		if da > 0 && db > 0 {
			na, nb := strings.TrimLeft(a[:da], "0"), strings.TrimLeft(b[:db], "0")
			if c := len(na) - len(nb); c != 0 {
				return c
			}
			if c := strings.Compare(na, nb); c != 0 {
				return c
			}
			a, b = a[da:], b[db:]
			continue
		}
		if a[0] != b[0] {
			return int(a[0]) - int(b[0])
		}
		a, b = a[1:], b[1:]
	}
	return len(a) - len(b)
}

func digitRun(s string) int {
	n := 0
	for n < len(s) && s[n] >= '0' && s[n] <= '9' {
		n++
	}
	return n
}
