package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/img2ext4/img2ext4/internal/registrytest"
	"github.com/img2ext4/img2ext4/internal/tartest"
)

// TestBlobCacheFlag converts an image twice with --blob-cache: the second
// run fetches no blob from the registry (counted there), and the cache
// holds the blobs by digest.
func TestBlobCacheFlag(t *testing.T) {
	reg := registrytest.GGCR(t)
	img := tartest.Image(tartest.Tar(tartest.File("a", "1")), tartest.Tar(tartest.File("b", "2")))
	ref := reg.Push(t, "test/img:1", img)
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	t.Setenv("REGISTRY_AUTH_FILE", filepath.Join(t.TempDir(), "none.json"))
	cache := filepath.Join(t.TempDir(), "blobs")

	for i, format := range []string{"dir", "tar"} {
		out := filepath.Join(t.TempDir(), "out")
		if code, _, errOut := runCLI(t, "", "-q", "--format", format, "--blob-cache", cache, ref, out); code != 0 {
			t.Fatalf("run %d: exit %d: %s", i, code, errOut)
		}
		got := reg.Count(registrytest.BlobGet)
		reg.Reset()
		if (i == 0) != (got > 0) {
			t.Errorf("run %d fetched %d blobs", i, got)
		}
	}
	ls, _ := img.Layers()
	for _, l := range ls {
		d, _ := l.Digest()
		if _, err := os.Stat(filepath.Join(cache, d.Algorithm, d.Hex)); err != nil {
			t.Errorf("layer %s not in the cache: %v", d, err)
		}
	}
}
