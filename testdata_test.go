package img2ext4_test

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/img2ext4/img2ext4/internal/tartest"
)

var update = flag.Bool("update", false, "rewrite testdata/hello-oci")

// helloLayers is the small image that ships in testdata/hello-oci, the one README.md
// converts. It has three layers so that the README's command shows a real merge: a
// whiteout, an opaque directory, a hard link and a replaced type.
func helloLayers() [][]byte {
	t := time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC)
	m := tartest.Mtime(t)
	return [][]byte{
		tartest.Tar(
			tartest.Dir("bin", m), tartest.Dir("etc", m), tartest.Dir("usr", m), tartest.Dir("usr/bin", m),
			tartest.Dir("var", m), tartest.Dir("var/cache", m), tartest.Dir("tmp", m, tartest.Mode(0o1777)),
			tartest.File("etc/os-release", "NAME=\"hello\"\nID=hello\nVERSION_ID=1\n", m),
			tartest.File("etc/motd", "to be removed\n", m),
			tartest.File("var/cache/old", "stale\n", m),
			tartest.File("usr/bin/hello", "#!/bin/sh\necho hello from img2ext4\n", m, tartest.Mode(0o755)),
			tartest.Link("usr/bin/hi", "usr/bin/hello", m),
			tartest.Symlink("bin/hello", "../usr/bin/hello", m),
		),
		tartest.Tar(
			tartest.Whiteout("etc/motd"),
			tartest.Dir("var/cache", m),
			tartest.Opaque("var/cache"),
			tartest.File("var/cache/fresh", "new\n", m),
			tartest.File("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", m),
		),
		tartest.Tar(
			tartest.Dir("etc/motd", m),
			tartest.File("etc/motd/README", "a directory now\n", m),
			tartest.File("usr/bin/hello", "#!/bin/sh\necho hello again\n", m, tartest.Mode(0o755)),
		),
	}
}

// TestHelloImage keeps testdata/hello-oci equal to what helloLayers describes; run with
// -update to rewrite it.
func TestHelloImage(t *testing.T) {
	dir := filepath.Join("testdata", "hello-oci")
	if *update {
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		p, err := layout.Write(dir, empty.Index)
		if err != nil {
			t.Fatal(err)
		}
		img := tartest.Image(helloLayers()...)
		if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "latest"})); err != nil {
			t.Fatal(err)
		}
	}
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatalf("testdata/hello-oci missing (go test -run TestHelloImage -update): %v", err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	want, _ := tartest.Image(helloLayers()...).Digest()
	if len(m.Manifests) != 1 || m.Manifests[0].Digest != want {
		t.Fatalf("testdata/hello-oci holds %v, want one image %s; run with -update", m.Manifests, want)
	}
}
