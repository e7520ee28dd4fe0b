// Command floor is the lower bound of any registry-to-filesystem converter: it fetches
// every layer blob of an image, verifying its digest as go-containerregistry does, and
// decompresses it (gzip or zstd, told from its first bytes, each with one goroutine) to
// nothing, with the layers fetched in parallel as img2ext4 does.
//
//	floor [-jobs 4] 127.0.0.1:5077/bench:latest
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"sync/atomic"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sync/errgroup"
)

func main() {
	jobs := flag.Int("jobs", 4, "layer blobs to fetch in parallel")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: floor [-jobs N] REF")
		os.Exit(2)
	}
	if err := run(context.Background(), flag.Arg(0), *jobs); err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, ref string, jobs int) error {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return err
	}
	img, err := remote.Image(r, remote.WithContext(ctx))
	if err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	var total atomic.Int64
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(jobs)
	for _, l := range layers {
		g.Go(func() error {
			rc, err := l.Compressed() // verifies the digest at EOF
			if err != nil {
				return err
			}
			defer rc.Close()
			br := bufio.NewReaderSize(rc, 64<<10)
			var zr io.Reader
			if head, _ := br.Peek(4); bytes.Equal(head, []byte{0x28, 0xb5, 0x2f, 0xfd}) {
				zd, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(1<<30))
				if err != nil {
					return err
				}
				defer zd.Close()
				zr = zd
			} else {
				gz, err := gzip.NewReader(br)
				if err != nil {
					return err
				}
				zr = gz
			}
			n, err := io.Copy(io.Discard, zr)
			if err != nil {
				return err
			}
			// Drain what follows the compressed stream so the digest is checked.
			if _, err := io.Copy(io.Discard, br); err != nil {
				return err
			}
			total.Add(n)
			return ctx.Err()
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "floor: %d layers, %d uncompressed bytes\n", len(layers), total.Load())
	return nil
}
