package layerapply_test

import (
	"archive/tar"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/img2ext4/img2ext4/internal/tartest"
	"github.com/img2ext4/img2ext4/internal/treesnap"
	"github.com/img2ext4/img2ext4/layerapply"
)

func TestMergerAdd(t *testing.T) {
	img := tartest.Image(
		tartest.Tar(dir("usr"), dir("usr/bin"), symlink("bin", "usr/bin"), file("etc-file", "old")),
		tartest.Tar(dir("sbin"), file("sbin/init", "distro init")),
	)
	root := filepath.Join(t.TempDir(), "root")
	d, _ := layerapply.NewDir(root)
	m, err := layerapply.NewMerger(d)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.Apply(context.Background(), img); err != nil {
		t.Fatal(err)
	}
	add := func(name, body string) error {
		return m.Add(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: int64(len(body)), Mode: 0o755, ModTime: tartest.Epoch}, strings.NewReader(body))
	}
	for _, c := range [][2]string{
		{"bin/agent", "agent"},        // through the merged-usr symlink
		{"/sbin/init", "our init"},    // replaces a file of the image
		{"opt/new/deep/tool", "tool"}, // missing parents are created
		{"etc-file", "new"},           // replaces a file of the lowest layer
		{"../../../escape", "never"},  // refused
	} {
		err := add(c[0], c[1])
		if c[0] == "../../../escape" {
			if !errors.Is(err, layerapply.ErrUnsafePath) {
				t.Errorf("add %s: err = %v", c[0], err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("add %s: %v", c[0], err)
		}
	}
	if err := m.Add(&tar.Header{Typeflag: tar.TypeLink, Name: "bin/agent2", Linkname: "/usr/bin/agent"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	es, _ := treesnap.Dir(root, treesnap.Options{NoXattrs: true})
	want := []string{"bin -> usr/bin", "etc-file = new", "opt/", "opt/new/", "opt/new/deep/", "opt/new/deep/tool = tool",
		"sbin/", "sbin/init = our init", "usr/", "usr/bin/", "usr/bin/agent = agent (link usr/bin/agent)", "usr/bin/agent2 = agent (link usr/bin/agent)"}
	if diff := treesnap.Diff(want, treesnap.ShortLines(es)); diff != "" {
		t.Errorf("tree differs:\n%s", diff)
	}
}
