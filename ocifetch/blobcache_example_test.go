package ocifetch_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/img2ext4/img2ext4/ocifetch"
)

// ExampleBlobCache fetches an image from a registry through a blob cache,
// lists what the cache keeps, and prunes it down to nothing.
func ExampleBlobCache() {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	ref := strings.TrimPrefix(srv.URL, "http://") + "/app:1"
	img, _ := random.Image(1024, 2)
	r, _ := name.ParseReference(ref)
	if err := remote.Write(r, img); err != nil {
		log.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "ocifetch-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	cacheDir := filepath.Join(dir, "blobs")

	ctx := context.Background()
	opts := []ocifetch.Option{ocifetch.WithBlobCache(cacheDir), ocifetch.WithKeychain(authn.NewMultiKeychain())} // no credentials
	ri, err := ocifetch.Image(ctx, ref, opts...)                                                                 // the config goes into the cache
	if err != nil {
		log.Fatal(err)
	}
	p, err := ocifetch.Prefetch(ctx, ri, opts...) // and so do the layers
	if err != nil {
		log.Fatal(err)
	}
	for _, l := range p.Layers() {
		rc, err := l.Compressed()
		if err != nil {
			log.Fatal(err)
		}
		_, err = io.Copy(io.Discard, rc) // a blob enters the cache once downloaded and verified
		rc.Close()
		if err != nil {
			log.Fatal(err)
		}
	}
	p.Close()

	cache, err := ocifetch.OpenBlobCache(cacheDir)
	if err != nil {
		log.Fatal(err)
	}
	blobs, err := cache.Blobs()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("cached blobs:", len(blobs))
	res, err := cache.Prune(ctx, ocifetch.PruneOptions{MaxSize: 1})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("removed:", len(res.Removed), "kept:", res.Kept)
	// Output:
	// cached blobs: 3
	// removed: 3 kept: 0
}
