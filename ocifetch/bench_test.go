package ocifetch

import (
	"bytes"
	"io"
	"math/rand"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
)

// benchImage is a deterministic image of n layers of about size bytes each.
func benchImage(b *testing.B, size, n int64) (v1.Image, int64) {
	b.Helper()
	img, err := random.Image(size, n, random.WithSource(rand.NewSource(1)))
	if err != nil {
		b.Fatal(err)
	}
	ls, _ := img.Layers()
	var total int64
	for _, l := range ls {
		s, _ := l.Size()
		total += s
	}
	return img, total
}

// BenchmarkPrefetch measures fetching, verifying and storing all layer blobs
// of an image from a loopback registry.
func BenchmarkPrefetch(b *testing.B) {
	b.Setenv("REGISTRY_AUTH_FILE", "/nonexistent")
	b.Setenv("DOCKER_CONFIG", b.TempDir())
	_, host := newRegistry(b, nil)
	img, total := benchImage(b, 4<<20, 4)
	push(b, host+"/bench:1", img)
	ri, err := Image(ctxBG, host+"/bench:1")
	if err != nil {
		b.Fatal(err)
	}
	tmp := b.TempDir()
	b.SetBytes(total)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		p, err := Prefetch(ctxBG, ri, WithTempDir(tmp))
		if err != nil {
			b.Fatal(err)
		}
		for _, l := range p.Layers() {
			if err := drainBlob(l); err != nil {
				b.Fatal(err)
			}
		}
		if err := p.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerify measures the hashing reader every blob passes through.
func BenchmarkVerify(b *testing.B) {
	data := make([]byte, 8<<20)
	rand.New(rand.NewSource(1)).Read(data)
	desc := v1.Descriptor{Digest: sha256Of(data), Size: int64(len(data))}
	buf := make([]byte, 256<<10)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		vr, err := verify(io.NopCloser(bytes.NewReader(data)), desc)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.CopyBuffer(io.Discard, vr, buf); err != nil {
			b.Fatal(err)
		}
	}
}
