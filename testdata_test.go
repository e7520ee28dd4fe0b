package img2ext4_test

import (
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/img2ext4/img2ext4"
	"github.com/img2ext4/img2ext4/internal/tartest"
	"github.com/img2ext4/img2ext4/internal/treesnap"
	"github.com/img2ext4/img2ext4/ocifetch"
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

// helloIndex is the multi-platform image that ships in testdata/hello-oci: an image index
// with a linux/amd64 and a linux/arm64/v8 manifest sharing the same three layers, each with
// its own config. The layers hold only text (shell scripts), so both are true to their
// platform, and the README's command works on either kind of host.
func helloIndex() (v1.ImageIndex, error) {
	amd64 := tartest.Image(helloLayers()...)
	cf, err := amd64.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.Variant = "arm64", "v8"
	arm64, err := mutate.ConfigFile(amd64, cf)
	if err != nil {
		return nil, err
	}
	return mutate.IndexMediaType(mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: amd64, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm64, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}}},
	), types.DockerManifestList), nil
}

// TestHelloImage keeps testdata/hello-oci equal to what helloIndex describes; run with
// -update to rewrite it.
func TestHelloImage(t *testing.T) {
	dir := filepath.Join("testdata", "hello-oci")
	want, err := helloIndex()
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		p, err := layout.Write(dir, empty.Index)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.AppendIndex(want, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "latest"})); err != nil {
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
	wantDigest, _ := want.Digest()
	if len(m.Manifests) != 1 || m.Manifests[0].Digest != wantDigest {
		t.Fatalf("testdata/hello-oci holds %v, want one index %s; run with -update", m.Manifests, wantDigest)
	}
}

// TestHelloPlatforms converts testdata/hello-oci for both of its platforms, the way the
// README's command and ExampleConvert run on an amd64 and on an arm64 host, and for a
// platform it lacks.
func TestHelloPlatforms(t *testing.T) {
	for _, p := range []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}} {
		out := filepath.Join(t.TempDir(), "rootfs.img")
		res, err := img2ext4.Convert(context.Background(), "oci:testdata/hello-oci:latest", out,
			img2ext4.WithFetchOptions(ocifetch.WithPlatform(p)))
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if res.Platform.Architecture != p.Architecture || res.Layers != 3 {
			t.Errorf("%s: converted %s with %d layers", p, res.Platform, res.Layers)
		}
		dir := filepath.Join(t.TempDir(), "rootfs")
		if _, err := img2ext4.Convert(context.Background(), "oci:testdata/hello-oci:latest", dir,
			img2ext4.WithFormat(img2ext4.FormatDir), img2ext4.WithFetchOptions(ocifetch.WithPlatform(p))); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		es, err := treesnap.Dir(dir, treesnap.Options{NoXattrs: true})
		if err != nil {
			t.Fatal(err)
		}
		if d := treesnap.Diff(helloWant, treesnap.ShortLines(es)); d != "" {
			t.Errorf("%s: tree differs:\n%s", p, d)
		}
	}
	_, err := img2ext4.Convert(context.Background(), "oci:testdata/hello-oci:latest", filepath.Join(t.TempDir(), "x.img"),
		img2ext4.WithFetchOptions(ocifetch.WithPlatform(v1.Platform{OS: "linux", Architecture: "riscv64"})))
	if !errors.Is(err, ocifetch.ErrPlatform) || !strings.Contains(err.Error(), "linux/arm64") {
		t.Errorf("riscv64: err = %v, want the platforms offered", err)
	}
}
