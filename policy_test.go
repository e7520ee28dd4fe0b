package img2ext4_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/img2ext4/img2ext4"
	"github.com/img2ext4/img2ext4/internal/tartest"
	"github.com/img2ext4/img2ext4/layerapply"
	"github.com/img2ext4/img2ext4/progress"
	"golang.org/x/sys/unix"
)

// capValue is a v3 security.capability granting CAP_NET_RAW (effective, permitted) to the
// root of the user namespace whose root is uid rootid.
func capValue(rootid uint32) string {
	b := make([]byte, 24)
	binary.LittleEndian.PutUint32(b, 0x03000001)
	binary.LittleEndian.PutUint32(b[4:], 1<<13)
	binary.LittleEndian.PutUint32(b[20:], rootid)
	return string(b)
}

const undef = 0xffffffff

// policyLayer is issue 13's adversarial layer, as exact PAX records.
func policyLayer() []byte {
	return tartest.Tar(
		tartest.Dir("d", tartest.Mode(0o755),
			tartest.Xattr("system.posix_acl_default", tartest.ACL(1, 7, undef, 2, 5, 1002, 4, 5, undef, 0x10, 5, undef, 0x20, 5, undef))),
		tartest.File("d/cap-ns0", "#!/bin/true\n", tartest.Mode(0o755), tartest.Xattr("security.capability", capValue(0))),
		tartest.File("d/cap-ns1000", "#!/bin/true\n", tartest.Mode(0o755), tartest.Xattr("security.capability", capValue(1000))),
		tartest.File("d/cap-garbage", "#!/bin/true\n", tartest.Mode(0o755), tartest.Xattr("security.capability", "\x01\x02\x03\x04\x05\x06\x07\x08")),
		// user::rwx group::r-x other::--- mask::rwx user:1000:rwx: getfacl shows uid 1000
		// with rwx, but in this order the kernel meets other:: first and denies it.
		tartest.File("d/acl-unsorted", "for uid 1000\n", tartest.Mode(0o770),
			tartest.Xattr("system.posix_acl_access", tartest.ACL(1, 7, undef, 4, 5, undef, 0x20, 0, undef, 0x10, 7, undef, 2, 7, 1000))),
		// A named user and no mask: the kernel refuses it at setxattr.
		tartest.File("d/acl-invalid", "x\n", tartest.Mode(0o750),
			tartest.Xattr("system.posix_acl_access", tartest.ACL(1, 7, undef, 2, 7, 1001, 4, 5, undef, 0x20, 0, undef))),
		tartest.File("d/acl-text", "from GNU tar\n", tartest.Mode(0o750),
			tartest.PAX("SCHILY.acl.access", "user::rwx\nuser:1000:r-x\ngroup::r-x\nmask::r-x\nother::---\n")),
		tartest.File("d/default-on-file", "x\n", tartest.Xattr("system.posix_acl_default", tartest.ACL(1, 7, undef, 4, 5, undef, 0x20, 5, undef))),
		tartest.Symlink("d/link", "cap-ns0", tartest.Xattr("system.posix_acl_access", tartest.ACL(1, 7, undef, 4, 5, undef, 0x20, 5, undef))),
		tartest.File("d/odd", "o\n", tartest.Xattr("system.nfs4_acl", "\x00\x00\x00\x01"), tartest.Xattr("btrfs.compression", "zstd"),
			tartest.Xattr("user.", "bare"), tartest.Xattr("user.big", strings.Repeat("b", 64<<10)), tartest.Xattr("user.ok", "kept")),
		tartest.File(strings.Repeat("long/", 1000)+"f", "deep\n"),
		tartest.File("d/"+strings.Repeat("n", 256), "long name\n"),
		// The most one xattr block holds: 32-byte header, 4-byte end, a 20-byte entry for
		// "full", 4,040 bytes of value.
		tartest.File("d/full", "f\n", tartest.Xattr("user.full", strings.Repeat("f", 4040))),
		tartest.File("d/after", "still here\n"),
	)
}

var policyWarnings = []string{
	"changed d/acl-unsorted system.posix_acl_access",
	"dropped d/acl-invalid system.posix_acl_access",
	"dropped d/cap-garbage security.capability",
	"dropped d/cap-ns1000 security.capability",
	"dropped d/default-on-file system.posix_acl_default",
	"dropped d/link system.posix_acl_access",
	"dropped d/odd btrfs.compression",
	"dropped d/odd system.nfs4_acl",
	"dropped d/odd user.",
	"dropped d/odd user.big",
	"skipped d/nnnnnnnnnnnnnnnnnnnnnnnnnnnn… ",
	"skipped long/long/long/long/long/long/… ",
}

func warningLines(ws []layerapply.Warning) []string {
	var out []string
	for _, w := range ws {
		p := w.Path
		if len(p) > 30 {
			p = p[:30] + "…"
		}
		out = append(out, string(w.Action)+" "+p+" "+w.Attr)
	}
	slices.Sort(out)
	return out
}

// TestPolicyOutputs converts issue 13's layer to all three outputs and reads each back the
// way the kernel does: the escalating capability is absent, the unsorted ACL is enforced as
// getfacl shows it, the invalid one is gone, odd attributes are skipped and reported.
func TestPolicyOutputs(t *testing.T) {
	ref := pushed(t, tartest.Image(policyLayer()))
	// A world-traversable directory, so that setpriv can check access as uid 1000.
	tmp, err := os.MkdirTemp("", "img2ext4-policy-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	os.Chmod(tmp, 0o755)

	for _, format := range []img2ext4.Format{img2ext4.FormatExt4, img2ext4.FormatDir, img2ext4.FormatTar} {
		t.Run(string(format), func(t *testing.T) {
			out := filepath.Join(tmp, "out."+string(format))
			var mu sync.Mutex
			var events []progress.Warning
			res, err := img2ext4.Convert(context.Background(), ref, out, img2ext4.WithFormat(format),
				img2ext4.WithProgress(func(ev progress.Event) {
					if ev.Phase == progress.PhaseWarning {
						mu.Lock()
						events = append(events, *ev.Warning)
						mu.Unlock()
					}
				}))
			if err != nil {
				t.Fatal(err)
			}
			if got := warningLines(res.Warnings); !slices.Equal(got, policyWarnings) {
				t.Errorf("Result.Warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(policyWarnings, "\n"))
			}
			if len(events) != len(res.Warnings) {
				t.Errorf("%d warning events, %d warnings", len(events), len(res.Warnings))
			}
			switch format {
			case img2ext4.FormatExt4:
				fsck(t, out)
				t.Run("debugfs", func(t *testing.T) { checkPolicyDebugfs(t, out) })
				t.Run("kernel", func(t *testing.T) {
					if os.Geteuid() != 0 {
						t.Skip("loop mounting and setpriv need root")
					}
					needPolicyTools(t)
					mnt := filepath.Join(tmp, "mnt")
					os.Mkdir(mnt, 0o755)
					if b, err := exec.Command("mount", "-o", "ro,loop", out, mnt).CombinedOutput(); err != nil {
						t.Skipf("cannot loop-mount here: %v %s", err, b)
					}
					defer exec.Command("umount", mnt).Run()
					checkPolicyKernel(t, mnt)
				})
			case img2ext4.FormatDir:
				if os.Geteuid() != 0 {
					t.Skip("restoring capabilities and ACLs into a directory needs root")
				}
				needPolicyTools(t)
				checkPolicyKernel(t, out)
			case img2ext4.FormatTar:
				if os.Geteuid() != 0 {
					t.Skip("extracting capabilities and ACLs with GNU tar needs root")
				}
				needPolicyTools(t)
				needTool(t, "tar")
				x := filepath.Join(tmp, "x")
				os.Mkdir(x, 0o755)
				if b, err := exec.Command(needTool(t, "tar"), "--xattrs", "--xattrs-include=*", "--acls", "--numeric-owner", "-xpf", out, "-C", x).CombinedOutput(); err != nil {
					t.Fatalf("GNU tar -x: %v\n%s", err, b)
				}
				checkPolicyKernel(t, x)
			}
		})
	}
}

// needPolicyTools skips the test unless the readers checkPolicyKernel runs are installed.
func needPolicyTools(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"getcap", "getfacl", "setpriv"} {
		needTool(t, tool)
	}
}

// checkPolicyKernel reads the converted tree at root through the kernel: getcap, getfacl,
// access as another uid with setpriv, and the raw attributes with lgetxattr.
func checkPolicyKernel(t *testing.T, root string) {
	p := func(name string) string { return filepath.Join(root, "d", name) }
	run := func(name string, args ...string) (string, error) {
		b, err := exec.Command(needTool(t, name), args...).CombinedOutput()
		return string(b), err
	}
	if out, err := run("getcap", p("cap-ns0"), p("cap-ns1000"), p("cap-garbage")); err != nil {
		t.Errorf("getcap: %v\n%s", err, out)
	} else if want := p("cap-ns0") + " cap_net_raw=ep\n"; out != want {
		t.Errorf("getcap shows:\n%s\nwant only:\n%s", out, want)
	}
	for _, f := range []string{"cap-ns1000", "cap-garbage"} {
		if st, err := os.Stat(p(f)); err != nil || st.Mode().Perm() != 0o755 {
			t.Errorf("%s: %v, %v; want mode 0755 kept", f, st.Mode(), err)
		}
	}

	facl := func(args ...string) string {
		out, err := run("getfacl", append([]string{"-cn"}, args...)...)
		if err != nil {
			t.Errorf("getfacl %v: %v\n%s", args, err, out)
		}
		return out
	}
	if out := facl(p("acl-unsorted")); !strings.Contains(out, "user:1000:rwx\n") {
		t.Errorf("getfacl acl-unsorted:\n%s", out)
	}
	if out := facl(p("acl-text")); !strings.Contains(out, "user:1000:r-x\n") || !strings.Contains(out, "mask::r-x\n") {
		t.Errorf("getfacl acl-text:\n%s", out)
	}
	if out := facl(p("acl-invalid")); strings.Contains(out, "user:1001") {
		t.Errorf("getfacl acl-invalid shows the invalid ACL:\n%s", out)
	}
	if out := facl("-d", filepath.Join(root, "d")); !strings.Contains(out, "default:user:1002:r-x\n") && !strings.Contains(out, "user:1002:r-x\n") {
		t.Errorf("getfacl -d d:\n%s", out)
	}
	// The ACL means what getfacl shows: uid 1000 reads acl-unsorted and acl-text, uid 1001
	// (named in no ACL, "other") does not.
	as := func(uid string, file string) error {
		_, err := run("setpriv", "--reuid", uid, "--regid", uid, "--clear-groups", "cat", file)
		return err
	}
	for _, f := range []string{"acl-unsorted", "acl-text"} {
		if err := as("1000", p(f)); err != nil {
			t.Errorf("uid 1000 cannot read %s, which its ACL grants: %v", f, err)
		}
		if err := as("1001", p(f)); err == nil {
			t.Errorf("uid 1001 reads %s, which its ACL denies", f)
		}
	}

	noAttr := func(file, attr string) {
		if _, err := unix.Lgetxattr(file, attr, make([]byte, 64<<10)); err == nil {
			t.Errorf("%s still has %s", file, attr)
		}
	}
	noAttr(p("acl-invalid"), "system.posix_acl_access")
	noAttr(p("default-on-file"), "system.posix_acl_default")
	noAttr(p("link"), "system.posix_acl_access")
	noAttr(p("cap-ns1000"), "security.capability")
	noAttr(p("odd"), "user.big")
	if n, err := unix.Lgetxattr(p("full"), "user.full", make([]byte, 8192)); err != nil || n != 4040 {
		t.Errorf("full user.full: %d bytes, %v; want 4040", n, err)
	}
	buf := make([]byte, 64)
	if n, err := unix.Lgetxattr(p("odd"), "user.ok", buf); err != nil || string(buf[:n]) != "kept" {
		t.Errorf("odd user.ok = %q, %v", buf[:n], err)
	}
	if b, err := os.ReadFile(p("after")); err != nil || string(b) != "still here\n" {
		t.Errorf("d/after: %q, %v", b, err)
	}
	if _, err := os.Lstat(filepath.Join(root, "long")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the over-long path left %v", err)
	}
}

// checkPolicyDebugfs lists the image's attributes with debugfs, which needs no root.
func checkPolicyDebugfs(t *testing.T, img string) {
	list := func(name string) string {
		b, err := exec.Command(needTool(t, "debugfs"), "-R", "ea_list /d/"+name, img).CombinedOutput()
		if err != nil {
			t.Fatalf("debugfs ea_list %s: %v\n%s", name, err, b)
		}
		return string(b)
	}
	for _, tc := range []struct{ name, want, not string }{
		{"cap-ns0", "security.capability (20)", ""},
		{"cap-ns1000", "", "security.capability"},
		{"cap-garbage", "", "security.capability"},
		{"acl-unsorted", "system.posix_acl_access", ""},
		{"acl-invalid", "", "posix_acl"},
		{"default-on-file", "", "posix_acl"},
		{"link", "", "posix_acl"},
		{"odd", "user.ok", "user.big"},
	} {
		out := list(tc.name)
		if tc.want != "" && !strings.Contains(out, tc.want) || tc.not != "" && strings.Contains(out, tc.not) {
			t.Errorf("debugfs ea_list /d/%s:\n%s\nwant %q, not %q", tc.name, out, tc.want, tc.not)
		}
	}
}

// TestPolicyStrict refuses the same layer with WithStrict, leaving no output.
func TestPolicyStrict(t *testing.T) {
	ref := pushed(t, tartest.Image(policyLayer()))
	for _, format := range []img2ext4.Format{img2ext4.FormatExt4, img2ext4.FormatDir, img2ext4.FormatTar} {
		t.Run(string(format), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			_, err := img2ext4.Convert(context.Background(), ref, out, img2ext4.WithFormat(format), img2ext4.WithStrict(true))
			var se *layerapply.StrictError
			if !errors.Is(err, layerapply.ErrStrict) || !errors.As(err, &se) {
				t.Fatalf("err = %v, want a StrictError", err)
			}
			if _, err := os.Lstat(out); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("strict failure left %s: %v", out, err)
			}
		})
	}
}

// TestWarningSummary checks the counts and the cut of the CLI summary lines.
func TestWarningSummary(t *testing.T) {
	res := &img2ext4.Result{WarningsOmitted: 3}
	for i := 0; i < 4; i++ {
		res.Warnings = append(res.Warnings, layerapply.Warning{Path: "f", Attr: "user.x", Action: layerapply.ActionDropped, Reason: "r"})
	}
	res.Warnings = append(res.Warnings, layerapply.Warning{Path: "g", Action: layerapply.ActionSkipped, Reason: "long"})
	lines := res.WarningSummary(2)
	want := []string{
		"metadata the output cannot hold as given: 4 attributes dropped, 1 entry skipped, 3 more not listed",
		"f: user.x dropped: r", "f: user.x dropped: r", "... and 6 more",
	}
	if !slices.Equal(lines, want) {
		t.Errorf("WarningSummary(2) =\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	if (&img2ext4.Result{}).WarningSummary(5) != nil {
		t.Error("no warnings gave lines")
	}
}
