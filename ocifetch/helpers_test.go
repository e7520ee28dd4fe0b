package ocifetch

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// newRegistry returns a loopback registry; wrap may put a handler around it.
func newRegistry(t testing.TB, wrap func(http.Handler) http.Handler) (*httptest.Server, string) {
	t.Helper()
	var h http.Handler = registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, strings.TrimPrefix(srv.URL, "http://")
}

// isolateCredentials points every credential source at empty locations.
func isolateCredentials(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("DOCKER_CONFIG", filepath.Join(dir, "docker"))
	t.Setenv("REGISTRY_AUTH_FILE", "")
	t.Setenv("XDG_RUNTIME_DIR", filepath.Join(dir, "run"))
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
	t.Setenv("HOME", dir)
}

// randomImage returns a random image of n layers with the given platform in its config.
func randomImage(t *testing.T, size, n int64, p *v1.Platform) v1.Image {
	t.Helper()
	img, err := random.Image(size, n)
	if err != nil {
		t.Fatal(err)
	}
	if p != nil {
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
		if img, err = mutate.ConfigFile(img, cf); err != nil {
			t.Fatal(err)
		}
	}
	return img
}

// multiPlatformIndex builds an index holding one random image per platform.
func multiPlatformIndex(t *testing.T, platforms ...v1.Platform) (v1.ImageIndex, []v1.Image) {
	t.Helper()
	var idx v1.ImageIndex = empty.Index
	var imgs []v1.Image
	for _, p := range platforms {
		img := randomImage(t, 256, 1, &p)
		imgs = append(imgs, img)
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
	}
	return idx, imgs
}

// push writes img to ref on a test registry.
func push(t testing.TB, ref string, img v1.Image) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
}

func mustDigest(t *testing.T, d interface{ Digest() (v1.Hash, error) }) v1.Hash {
	t.Helper()
	h, err := d.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// readLayers returns the compressed bytes of every layer, failing on any error.
func readLayers(t *testing.T, layers []v1.Layer) [][]byte {
	t.Helper()
	var out [][]byte
	for i, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
		b, err := io.ReadAll(rc)
		if err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
		if err := rc.Close(); err != nil {
			t.Fatalf("layer %d close: %v", i, err)
		}
		out = append(out, b)
	}
	return out
}

// drainBlob reads l's compressed blob to its end and returns the error of
// Compressed, Read or Close.
func drainBlob(l v1.Layer) error {
	rc, err := l.Compressed()
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, rc)
	if cerr := rc.Close(); err == nil {
		err = cerr
	}
	return err
}

// sameLayers checks that got's layers carry the bytes of want's.
func sameLayers(t *testing.T, want v1.Image, got []v1.Layer) {
	t.Helper()
	wl, err := want.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(wl) != len(got) {
		t.Fatalf("got %d layers, want %d", len(got), len(wl))
	}
	wb, gb := readLayers(t, wl), readLayers(t, got)
	for i := range wb {
		if !bytes.Equal(wb[i], gb[i]) {
			t.Errorf("layer %d: bytes differ", i)
		}
		if mustDigest(t, wl[i]) != mustDigest(t, got[i]) {
			t.Errorf("layer %d: digest %s, want %s", i, mustDigest(t, got[i]), mustDigest(t, wl[i]))
		}
	}
}

// tarDir writes the files under dir to a tar at file.
func tarDir(t *testing.T, dir, file string) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		hdr, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if fi.IsDir() {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			_, err = tw.Write(b)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// tarFiles writes a tar at file holding the named contents in order.
func tarFiles(t *testing.T, file string, names []string, contents map[string][]byte) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		b := contents[n]
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

var ctxBG = context.Background()

// remoteWriteIndex pushes an index to a parsed registry reference.
func remoteWriteIndex(r reference, idx v1.ImageIndex) error {
	return remote.WriteIndex(r.ref, idx)
}
