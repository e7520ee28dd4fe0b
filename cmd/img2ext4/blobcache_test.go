package main

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/img2ext4/img2ext4/internal/tartest"
)

// TestBlobCacheFlag converts an image twice with --blob-cache: the second
// run fetches no blob from the registry (counted there), and the cache
// holds the blobs by digest.
func TestBlobCacheFlag(t *testing.T) {
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	var blobGets atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha256:") {
			blobGets.Add(1)
		}
		reg.ServeHTTP(w, r)
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	ref := u.Host + "/test/img:1"
	r, _ := name.ParseReference(ref)
	img := tartest.Image(tartest.Tar(tartest.File("a", "1")), tartest.Tar(tartest.File("b", "2")))
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	t.Setenv("REGISTRY_AUTH_FILE", filepath.Join(t.TempDir(), "none.json"))
	cache := filepath.Join(t.TempDir(), "blobs")

	blobGets.Store(0)
	for i, format := range []string{"dir", "tar"} {
		out := filepath.Join(t.TempDir(), "out")
		if code, _, errOut := runCLI(t, "", "-q", "--format", format, "--blob-cache", cache, ref, out); code != 0 {
			t.Fatalf("run %d: exit %d: %s", i, code, errOut)
		}
		if got := blobGets.Swap(0); (i == 0) != (got > 0) {
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
