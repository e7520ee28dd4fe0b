package bench

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/img2ext4/img2ext4"
	"github.com/img2ext4/img2ext4/store"
)

// BenchmarkStore compares, for the generated one-layer image served by an in-process
// registry on loopback: a conversion without the store (Cold), a conversion into an empty
// store (ColdStored: the same plus hashing and publishing the artifact), a store hit by
// digest (HitDigest: no request) and by tag (HitTag: one manifest request), each
// returning the artifact's path, and a hit copied out to a file (HitCopy: a reflink or
// a sparse copy).
func BenchmarkStore(b *testing.B) {
	l := genLayer(b)
	img := genImage(b)
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	b.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	tag := u.Host + "/bench/store:1"
	ref, err := name.ParseReference(tag)
	if err != nil {
		b.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		b.Fatal(err)
	}
	d, _ := img.Digest()
	digest := u.Host + "/bench/store@" + d.String()
	ctx := context.Background()
	tmp := b.TempDir()
	out := filepath.Join(tmp, "out.img")
	opts := []img2ext4.Option{img2ext4.WithTempDir(tmp)}

	b.Run("Cold", func(b *testing.B) {
		report(b, l)
		for b.Loop() {
			if _, err := img2ext4.Convert(ctx, digest, out, opts...); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ColdStored", func(b *testing.B) {
		report(b, l)
		for b.Loop() {
			b.StopTimer()
			dir, err := os.MkdirTemp(tmp, "store-")
			if err != nil {
				b.Fatal(err)
			}
			s, err := store.Open(dir)
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if _, _, err := img2ext4.ConvertStored(ctx, s, digest, opts...); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			os.RemoveAll(dir)
			b.StartTimer()
		}
	})
	s, err := store.Open(filepath.Join(tmp, "store"))
	if err != nil {
		b.Fatal(err)
	}
	if _, _, err := img2ext4.ConvertStored(ctx, s, digest, opts...); err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name, ref string
	}{{"HitDigest", digest}, {"HitTag", tag}} {
		b.Run(bc.name, func(b *testing.B) {
			report(b, l)
			for b.Loop() {
				_, a, err := img2ext4.ConvertStored(ctx, s, bc.ref, opts...)
				if err != nil || a.Built {
					b.Fatalf("not a hit: %v", err)
				}
			}
		})
	}
	b.Run("HitCopy", func(b *testing.B) {
		report(b, l)
		for b.Loop() {
			if _, err := img2ext4.Convert(ctx, digest, out, append(opts, img2ext4.WithStore(s))...); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// throttled sends a response at about 25 MiB/s (200 Mbit/s), a registry across a network
// rather than in the same process.
type throttled struct {
	http.ResponseWriter
	start time.Time
}

func (t throttled) Write(p []byte) (int, error) {
	const rate = 25 << 20
	n := 0
	for len(p) > 0 {
		c := min(len(p), 64<<10)
		m, err := t.ResponseWriter.Write(p[:c])
		n += m
		if err != nil {
			return n, err
		}
		time.Sleep(time.Duration(float64(m) / rate * float64(time.Second)))
		p = p[c:]
	}
	return n, nil
}

// BenchmarkStoreBlobCache is a conversion into a store whose blob cache already holds
// every blob: each iteration asks for another volume label, so a new key, converted
// without downloading (the repeat with other options of issue 9), beside the same
// conversion into a store without those blobs (every blob downloaded from a registry
// throttled to about 25 MiB/s).
func BenchmarkStoreBlobCache(b *testing.B) {
	l := genLayer(b)
	img := genImage(b)
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reg.ServeHTTP(throttled{w, time.Now()}, r)
	}))
	b.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	ref, err := name.ParseReference(u.Host + "/bench/blobs:1")
	if err != nil {
		b.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	tmp := b.TempDir()
	for _, bc := range []struct {
		name   string
		cached bool
	}{{"Downloaded", false}, {"Cached", true}} {
		b.Run(bc.name, func(b *testing.B) {
			dir, err := os.MkdirTemp(tmp, bc.name)
			if err != nil {
				b.Fatal(err)
			}
			defer os.RemoveAll(dir)
			s, err := img2ext4.OpenStore(dir)
			if err != nil {
				b.Fatal(err)
			}
			if _, _, err := img2ext4.ConvertStored(ctx, s, ref.String(), img2ext4.WithTempDir(tmp)); err != nil {
				b.Fatal(err)
			}
			report(b, l)
			i := 0
			for b.Loop() {
				i++
				if !bc.cached {
					b.StopTimer()
					if err := os.RemoveAll(s.BlobDir()); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
				_, a, err := img2ext4.ConvertStored(ctx, s, ref.String(), img2ext4.WithTempDir(tmp),
					img2ext4.WithExt4(img2ext4.Ext4Options{Label: fmt.Sprint("v", i)}))
				if err != nil || !a.Built {
					b.Fatalf("not converted: %v", err)
				}
			}
		})
	}
}
