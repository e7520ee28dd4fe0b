package bench

import (
	"context"
	"io"
	"log"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/img2ext4/img2ext4"
	"github.com/img2ext4/img2ext4/artifact"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sync/errgroup"
)

// BenchmarkArtifact compares, for the generated one-layer image served by an in-process
// registry on loopback: converting it from the registry (Convert), pulling the ext4
// artifact pushed from that conversion (Pull: every chunk fetched, verified twice and
// written sparse, the file synced and renamed into place), the same without the sync and
// the rename (FetchUnsynced: artifact.Fetch into a new file), and the floor of a pull:
// fetching the same chunk blobs and decompressing them in memory with the same
// parallelism, nothing verified or written (FetchDecompress). Bytes are the image's.
//
// IMG2EXT4_BENCH_SOURCE=REF replaces the generated image with REF (such as
// oci:out/oci:bench, the image of build-image.sh), converted from where it is.
func BenchmarkArtifact(b *testing.B) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	b.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	source := os.Getenv("IMG2EXT4_BENCH_SOURCE")
	if source == "" {
		ref, err := name.ParseReference(u.Host + "/bench/artifact:1")
		if err != nil {
			b.Fatal(err)
		}
		if err := remote.Write(ref, genImage(b)); err != nil {
			b.Fatal(err)
		}
		source = ref.String()
	}
	ctx := context.Background()
	tmp := b.TempDir()
	src := filepath.Join(tmp, "src.img")
	if _, err := img2ext4.Convert(ctx, source, src, img2ext4.WithTempDir(tmp)); err != nil {
		b.Fatal(err)
	}
	p, err := artifact.PushFile(ctx, src, u.Host+"/bench/artifact-ext4:1")
	if err != nil {
		b.Fatal(err)
	}
	size := p.Index.Size
	b.Logf("image %d bytes: %d chunks, %d holes, %d blobs, %d compressed bytes", size, p.Chunks, p.Holes, p.Blobs, p.UploadedBytes)
	out := filepath.Join(tmp, "out.img")

	b.Run("Convert", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			if _, err := img2ext4.Convert(ctx, source, out, img2ext4.WithTempDir(tmp)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Pull", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			if _, err := img2ext4.Pull(ctx, p.Ref.String(), out); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("FetchUnsynced", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			a, err := artifact.Open(ctx, p.Ref.String())
			if err != nil {
				b.Fatal(err)
			}
			f, err := os.Create(out)
			if err != nil {
				b.Fatal(err)
			}
			if err := f.Truncate(a.Size()); err != nil {
				b.Fatal(err)
			}
			if _, err := a.Fetch(ctx, f); err != nil {
				b.Fatal(err)
			}
			f.Close()
		}
	})
	b.Run("FetchDecompress", func(b *testing.B) {
		b.SetBytes(size)
		dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(artifact.DefaultJobs))
		if err != nil {
			b.Fatal(err)
		}
		defer dec.Close()
		puller, err := remote.NewPuller(remote.WithJobs(artifact.DefaultJobs))
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			g, gctx := errgroup.WithContext(ctx)
			g.SetLimit(artifact.DefaultJobs)
			for _, d := range p.Index.Blobs() {
				g.Go(func() error {
					l, err := puller.Layer(gctx, p.Ref.Context().Digest(d.Digest.String()))
					if err != nil {
						return err
					}
					rc, err := l.Compressed()
					if err != nil {
						return err
					}
					defer rc.Close()
					blob, err := io.ReadAll(rc)
					if err != nil {
						return err
					}
					_, err = dec.DecodeAll(blob, make([]byte, 0, artifact.ChunkSize))
					return err
				})
			}
			if err := g.Wait(); err != nil {
				b.Fatal(err)
			}
		}
	})
	os.Remove(out)
}
