package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/img2ext4/img2ext4/internal/tartest"
)

// TestLimitFlags lowers each limit below what one image needs, through its flag: the
// conversion fails with exit status 1 and a message naming that flag, and values below 1
// are usage errors.
func TestLimitFlags(t *testing.T) {
	lay := filepath.Join(t.TempDir(), "layout")
	p, err := layout.Write(lay, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	img := tartest.Image(
		tartest.Tar(
			tartest.File("a", "1"), tartest.File("b", strings.Repeat("x", 5000)),
			tartest.File("d/d/d/f", "deep"),
			tartest.File("x", "attrs", tartest.Xattr("user.one", "1"), tartest.Xattr("user.two", strings.Repeat("2", 100))),
		),
		tartest.Tar(tartest.File("c", "3")),
	)
	if err := p.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ flag, value string }{
		{"--max-entries", "2"},
		{"--max-bytes", "4K"},
		{"--max-path-len", "5"},
		{"--max-depth", "3"},
		{"--max-xattrs", "1"},
		{"--max-xattr-bytes", "64"},
		{"--max-layers", "1"},
	} {
		t.Run(tc.flag, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "rootfs")
			code, _, errOut := runCLI(t, "", "-q", "--format", "dir", tc.flag, tc.value, "oci:"+lay, out)
			if code != 1 || !strings.Contains(errOut, "over the limit") || !strings.Contains(errOut, "raise it with "+tc.flag+" ") {
				t.Errorf("exit %d: %s", code, errOut)
			}
			if code, _, errOut := runCLI(t, "", "-q", "--format", "dir", tc.flag, "0", "oci:"+lay, out); code != 2 || !strings.Contains(errOut, tc.flag+" 0") {
				t.Errorf("%s 0: exit %d: %s", tc.flag, code, errOut)
			}
		})
	}
	out := filepath.Join(t.TempDir(), "rootfs")
	if code, _, errOut := runCLI(t, "", "-q", "--format", "dir", "oci:"+lay, out); code != 0 {
		t.Fatalf("with the default limits: exit %d: %s", code, errOut)
	}
}
