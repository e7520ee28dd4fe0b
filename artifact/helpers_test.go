package artifact_test

import (
	"bytes"
	"context"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/img2ext4/img2ext4/artifact"
	"github.com/img2ext4/img2ext4/ext4writer"
	"github.com/img2ext4/img2ext4/internal/registrytest"
)

// registries returns the registries the tests run against: go-containerregistry's (with
// the referrers API) and, when installed, Debian's docker-registry (without).
func registries(t *testing.T) []func(t *testing.T) *registrytest.Registry {
	return []func(t *testing.T) *registrytest.Registry{
		func(t *testing.T) *registrytest.Registry { return registrytest.GGCR(t) },
		func(t *testing.T) *registrytest.Registry { return registrytest.Distribution(t) },
	}
}

// forEachRegistry runs fn in a subtest per registry.
func forEachRegistry(t *testing.T, fn func(t *testing.T, reg *registrytest.Registry)) {
	for i, start := range registries(t) {
		t.Run([]string{"ggcr", "distribution"}[i], func(t *testing.T) {
			fn(t, start(t))
		})
	}
}

// buildImage writes an ext4 image made by ext4writer into dir: a directory, a file of
// incompressible bytes, a text file, a file with a hole inside, and 8 MiB of free space,
// which the writer leaves as a hole. The bytes depend only on seed.
func buildImage(t *testing.T, dir string, seed uint64) string {
	t.Helper()
	path := filepath.Join(dir, "image.ext4")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := ext4writer.New(f, ext4writer.WithFreeSpace(8<<20), ext4writer.WithSeed("artifact test"))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	random := make([]byte, 5<<20+12345)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	text := bytes.Repeat([]byte("img2ext4 pushes ext4 images as OCI artifacts.\n"), 40000)
	sparse := make([]byte, 3<<20)
	copy(sparse[len(sparse)-4096:], random[:4096])
	entries := []struct {
		name string
		mode fs.FileMode
		body []byte
	}{
		{"data", fs.ModeDir | 0o755, nil},
		{"data/random.bin", 0o644, random},
		{"data/text.txt", 0o644, text},
		{"data/sparse.bin", 0o644, sparse},
	}
	for _, e := range entries {
		if err := w.Create(e.name, &ext4writer.File{Mode: e.mode, Size: int64(len(e.body))}); err != nil {
			t.Fatal(err)
		}
		if e.body != nil {
			if _, err := w.ReadFrom(bytes.NewReader(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// blocks returns the 512-byte blocks allocated to the file at path.
func blocks(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Blocks
}

// pushSource pushes a random image to repo and returns its manifest descriptor, to be
// an artifact's subject.
func pushSource(t *testing.T, repo string) v1.Descriptor {
	t.Helper()
	img, err := random.Image(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(repo + ":source")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	d, err := remote.Head(ref)
	if err != nil {
		t.Fatal(err)
	}
	return *d
}

// pullFile pulls ref into a new sparse file at path with Open and Fetch.
func pullFile(t *testing.T, ref, path string) (*artifact.Artifact, artifact.FetchStats, error) {
	t.Helper()
	ctx := context.Background()
	a, err := artifact.Open(ctx, ref)
	if err != nil {
		return nil, artifact.FetchStats{}, err
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(a.Size()); err != nil {
		t.Fatal(err)
	}
	st, err := a.Fetch(ctx, f)
	return a, st, err
}
