package layerapply_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/img2ext4/img2ext4/internal/tartest"
	"github.com/img2ext4/img2ext4/layerapply"
)

const noID = 0xffffffff

// The layer of issue 13: every kind of metadata a converter gets wrong, as exact PAX
// records.
var (
	// user::rwx user:1000:rwx group::r-x mask::rwx other::--- given with the named entry
	// after other, where the kernel's check would never reach it.
	unsortedACL = tartest.ACL(1, 7, noID, 4, 5, noID, 0x20, 0, noID, 0x10, 7, noID, 2, 7, 1000)
	sortedACL   = tartest.ACL(1, 7, noID, 2, 7, 1000, 4, 5, noID, 0x10, 7, noID, 0x20, 0, noID)
	// A named user and no mask: the kernel refuses it.
	invalidACL = tartest.ACL(1, 7, noID, 2, 7, 1001, 4, 5, noID, 0x20, 0, noID)
	defaultACL = tartest.ACL(1, 7, noID, 2, 5, 1002, 4, 5, noID, 0x10, 5, noID, 0x20, 5, noID)
	capRoot0   = capV3(0)
	capRoot1k  = capV3(1000)
	longName   = strings.Repeat("p", 200) + "/" + strings.Repeat("q/", 2000) + "f"
)

func oddLayer() []byte {
	return tartest.Tar(
		tartest.Dir("d", tartest.Xattr("system.posix_acl_default", defaultACL)),
		tartest.File("d/cap-ns0", "#!/bin/true\n", tartest.Mode(0o755), tartest.Xattr("security.capability", capRoot0)),
		tartest.File("d/cap-ns1000", "#!/bin/true\n", tartest.Mode(0o755), tartest.Xattr("security.capability", capRoot1k)),
		tartest.File("d/cap-garbage", "#!/bin/true\n", tartest.Mode(0o755), tartest.Xattr("security.capability", "\x01\x02\x03\x04\x05\x06\x07\x08")),
		tartest.File("d/acl-unsorted", "secret\n", tartest.Mode(0o770), tartest.Xattr("system.posix_acl_access", unsortedACL)),
		tartest.File("d/acl-invalid", "x\n", tartest.Mode(0o750), tartest.Xattr("system.posix_acl_access", invalidACL)),
		tartest.File("d/acl-text", "t\n", tartest.Mode(0o750),
			tartest.PAX("SCHILY.acl.access", "user::rwx\nuser:1000:r-x\ngroup::r-x\nmask::r-x\nother::---\n")),
		tartest.File("d/default-on-file", "x\n", tartest.Xattr("system.posix_acl_default", defaultACL)),
		tartest.Symlink("d/link", "cap-ns0", tartest.Xattr("system.posix_acl_access", sortedACL), tartest.Xattr("user.l", "v")),
		tartest.File("d/odd", "o\n", tartest.Xattr("system.nfs4_acl", "\x00\x00\x00\x01"), tartest.Xattr("btrfs.compression", "zstd"),
			tartest.Xattr("user.", "bare"), tartest.Xattr("user.big", strings.Repeat("b", 64<<10)), tartest.Xattr("user.ok", "kept")),
		tartest.File(longName, "deep\n"),
		tartest.Dir("d/"+strings.Repeat("n", 256)),
		tartest.Link("d/hl-early", "d/longlink"),
		tartest.Symlink("d/longlink", strings.Repeat("t/", 2100)),
		tartest.File("d/after", "still here\n"),
	)
}

func TestPolicyTarSink(t *testing.T) {
	var buf bytes.Buffer
	s, err := layerapply.NewTar(&buf, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var warns []layerapply.Warning
	err = layerapply.Apply(context.Background(), s, tartest.Image(oddLayer()),
		layerapply.WithWarnings(func(w layerapply.Warning) { warns = append(warns, w) }))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Read the output back with archive/tar: each entry's xattr records.
	got := map[string]map[string]string{}
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		x := map[string]string{}
		for k, v := range h.PAXRecords {
			if strings.HasPrefix(k, "SCHILY.") {
				x[k] = v
			}
		}
		got[strings.TrimSuffix(h.Name, "/")] = x
	}
	capV2 := "\x01\x00\x00\x02" + capRoot0[4:20]
	textACL := tartest.ACL(1, 7, noID, 2, 5, 1000, 4, 5, noID, 0x10, 5, noID, 0x20, 0, noID)
	want := map[string]map[string]string{
		"d": {"SCHILY.xattr.system.posix_acl_default": defaultACL,
			"SCHILY.acl.default": "user::rwx\nuser:1002:r-x\ngroup::r-x\nmask::r-x\nother::r-x\n"},
		"d/cap-ns0":     {"SCHILY.xattr.security.capability": capV2},
		"d/cap-ns1000":  {},
		"d/cap-garbage": {},
		"d/acl-unsorted": {"SCHILY.xattr.system.posix_acl_access": sortedACL,
			"SCHILY.acl.access": "user::rwx\nuser:1000:rwx\ngroup::r-x\nmask::rwx\nother::---\n"},
		"d/acl-invalid": {},
		"d/acl-text": {"SCHILY.xattr.system.posix_acl_access": textACL,
			"SCHILY.acl.access": "user::rwx\nuser:1000:r-x\ngroup::r-x\nmask::r-x\nother::---\n"},
		"d/default-on-file": {},
		"d/link":            {},
		"d/odd":             {"SCHILY.xattr.user.ok": "kept"},
		"d/after":           {},
	}
	for name, w := range want {
		g, ok := got[name]
		if !ok {
			t.Errorf("%s missing from the output", name)
			continue
		}
		for k, v := range w {
			if g[k] != v {
				t.Errorf("%s: %s = %q, want %q", name, k, g[k], v)
			}
		}
		for k := range g {
			if _, ok := w[k]; !ok {
				t.Errorf("%s: unexpected record %s", name, k)
			}
		}
	}
	for name := range got {
		if strings.Contains(name, "nnnn") || strings.HasPrefix(name, "ppp") && strings.Contains(name, "/") {
			t.Errorf("over-long %s written", name[:20])
		}
	}
	var lines []string
	for _, w := range warns {
		if !strings.HasPrefix(w.Layer, "sha256:") {
			t.Errorf("warning without layer digest: %+v", w)
		}
		lines = append(lines, string(w.Action)+" "+strings.TrimPrefix(w.Path, "d/")+" "+w.Attr)
	}
	slices.Sort(lines)
	wantLines := []string{
		"changed acl-unsorted system.posix_acl_access",
		"dropped acl-invalid system.posix_acl_access",
		"dropped cap-garbage security.capability",
		"dropped cap-ns1000 security.capability",
		"dropped default-on-file system.posix_acl_default",
		"dropped link system.posix_acl_access",
		"dropped link user.l",
		"dropped odd btrfs.compression",
		"dropped odd system.nfs4_acl",
		"dropped odd user.",
		"dropped odd user.big",
		"skipped " + longName + " ",
		"skipped longlink ",
		"skipped hl-early ",
		"skipped " + strings.Repeat("n", 256) + "/ ",
	}
	slices.Sort(wantLines)
	if !slices.Equal(lines, wantLines) {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(wantLines, "\n"))
	}
}

func TestPolicyStrict(t *testing.T) {
	cases := []struct {
		name  string
		entry tartest.Entry
		ok    bool
	}{
		{"escalating capability", tartest.File("f", "", tartest.Xattr("security.capability", capRoot1k)), false},
		{"invalid ACL", tartest.File("f", "", tartest.Xattr("system.posix_acl_access", invalidACL)), false},
		{"unknown namespace", tartest.File("f", "", tartest.Xattr("btrfs.compression", "zstd")), false},
		{"long path", tartest.File(longName, ""), false},
		{"sorted ACL is no loss", tartest.File("f", "", tartest.Xattr("system.posix_acl_access", unsortedACL)), true},
		{"v3 for root 0 is no loss", tartest.File("f", "", tartest.Xattr("security.capability", capRoot0)), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := layerapply.NewTar(io.Discard, t.TempDir())
			defer s.Abort()
			var warned int
			err := layerapply.Apply(context.Background(), s, tartest.Image(tartest.Tar(tc.entry)),
				layerapply.WithStrict(true), layerapply.WithWarnings(func(layerapply.Warning) { warned++ }))
			if tc.ok {
				if err != nil {
					t.Fatalf("strict refused a faithful change: %v", err)
				}
				return
			}
			var se *layerapply.StrictError
			var ee *layerapply.EntryError
			if !errors.Is(err, layerapply.ErrStrict) || !errors.As(err, &se) || !errors.As(err, &ee) {
				t.Fatalf("err = %v, want a StrictError inside an EntryError", err)
			}
			if warned != 0 {
				t.Errorf("%d warnings reported besides the error", warned)
			}
		})
	}
}

// TestTextACLNames: GNU tar 1.34 writes named ACL entries by name even with
// --numeric-owner (the records below are what it wrote for a file with
// "setfacl -m u:1000:r-x,g:50:rw"); the names resolve against the image's own
// /etc/passwd and /etc/group as merged when the entry comes, as tar resolves them on the
// system it extracts to.
func TestTextACLNames(t *testing.T) {
	gnu := "user::rw-\nuser:cloudsdk:r-x\ngroup::r--\ngroup:staff:rw-\nmask::rwx\nother::r--\n"
	base := tartest.Tar(
		tartest.Dir("etc"),
		tartest.File("etc/passwd", "root:x:0:0:root:/root:/bin/sh\ncloudsdk:x:1000:1000::/home/cloudsdk:/bin/sh\n"),
		tartest.File("etc/group", "root:x:0:\nstaff:x:50:\n"),
	)
	upper := tartest.Tar(
		tartest.File("app", "before etc in this layer\n", tartest.PAX("SCHILY.acl.access", strings.ReplaceAll(gnu, "cloudsdk", "svc"))),
		tartest.File("data", "named\n", tartest.Mode(0o674), tartest.PAX("SCHILY.acl.access", gnu)),
		tartest.File("etc/passwd", "root:x:0:0:root:/root:/bin/sh\ncloudsdk:x:1000:1000::/home/cloudsdk:/bin/sh\nsvc:x:2000:2000::/:/bin/false\n"),
		tartest.File("later", "named\n", tartest.PAX("SCHILY.acl.access", strings.ReplaceAll(gnu, "cloudsdk", "svc"))),
	)
	var buf bytes.Buffer
	s, _ := layerapply.NewTar(&buf, t.TempDir())
	var warns []layerapply.Warning
	if err := layerapply.Apply(context.Background(), s, tartest.Image(base, upper),
		layerapply.WithWarnings(func(w layerapply.Warning) { warns = append(warns, w) })); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got[h.Name] = h.PAXRecords["SCHILY.xattr.system.posix_acl_access"]
	}
	want := func(uid uint32) string {
		return tartest.ACL(1, 6, noID, 2, 5, uid, 4, 4, noID, 8, 6, 50, 0x10, 7, noID, 0x20, 4, noID)
	}
	if got["data"] != want(1000) {
		t.Errorf("data ACL = %x, want %x", got["data"], want(1000))
	}
	if got["later"] != want(2000) {
		t.Errorf("later ACL = %x, want %x (svc from the upper layer's /etc/passwd)", got["later"], want(2000))
	}
	if got["app"] != "" {
		t.Errorf("app has ACL %x; svc was not yet in /etc/passwd", got["app"])
	}
	if len(warns) != 1 || warns[0].Path != "app" || !strings.Contains(warns[0].Reason, `"svc"`) {
		t.Errorf("warnings %+v, want one for app's unknown user svc", warns)
	}
}
