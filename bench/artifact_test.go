package bench

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

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
// artifact pushed from that conversion (Pull: every chunk fetched, verified and
// written sparse, the file synced and renamed into place), the same without the sync and
// the rename (FetchUnsynced: artifact.Fetch into a new file), and the floor of a pull:
// fetching the same chunk blobs and decompressing them in memory with the same
// parallelism into reused buffers, nothing written and nothing verified but the blobs'
// digests, which go-containerregistry's reader checks (FetchDecompress). Bytes are the
// image's; cpu-ms/op is the CPU time of the whole process, the registry's included.
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
		defer reportCPU(b)()
		for b.Loop() {
			if _, err := img2ext4.Convert(ctx, source, out, img2ext4.WithTempDir(tmp)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Pull", func(b *testing.B) {
		b.SetBytes(size)
		defer reportCPU(b)()
		for b.Loop() {
			if _, err := img2ext4.Pull(ctx, p.Ref.String(), out); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("FetchUnsynced", func(b *testing.B) {
		b.SetBytes(size)
		defer reportCPU(b)()
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
		defer reportCPU(b)()
		dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(artifact.DefaultJobs))
		if err != nil {
			b.Fatal(err)
		}
		defer dec.Close()
		puller, err := remote.NewPuller(remote.WithJobs(artifact.DefaultJobs))
		if err != nil {
			b.Fatal(err)
		}
		// Buffers reused, as Fetch reuses them: allocating them is not part of the floor.
		bufs := sync.Pool{New: func() any { b := make([]byte, 2*artifact.ChunkSize); return &b }}
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
					bp, dp := bufs.Get().(*[]byte), bufs.Get().(*[]byte)
					defer bufs.Put(bp)
					defer bufs.Put(dp)
					// To the end of the body, where the reader checks the digest.
					n, err := io.ReadFull(rc, (*bp)[:d.Size+1])
					if err != io.ErrUnexpectedEOF || int64(n) != d.Size {
						return fmt.Errorf("blob %s: %d bytes: %v", d.Digest, n, err)
					}
					_, err = dec.DecodeAll((*bp)[:n], (*dp)[:0])
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

// reportCPU returns a function that reports the process's CPU time (user and system, of
// every goroutine, the in-process registry's too) per iteration since reportCPU was
// called, as cpu-ms/op: on a loaded machine it varies less than the wall time.
func reportCPU(b *testing.B) func() {
	cpu := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			b.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	start := cpu()
	return func() { b.ReportMetric(float64(cpu()-start)/float64(b.N)/1e6, "cpu-ms/op") }
}
