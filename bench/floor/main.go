// Command floor is the lower bound of any registry-to-filesystem converter: it fetches
// every layer blob of an image, verifying its digest as go-containerregistry does, and
// gunzips it to nothing, with the layers fetched in parallel as img2ext4 does.
//
//	floor [-jobs 4] 127.0.0.1:5077/bench:latest
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"sync/atomic"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/klauspost/compress/gzip"
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
			zr, err := gzip.NewReader(rc)
			if err != nil {
				return err
			}
			n, err := io.Copy(io.Discard, zr)
			if err != nil {
				return err
			}
			if err := zr.Close(); err != nil {
				return err
			}
			// Drain what follows the gzip stream so the digest is checked.
			if _, err := io.Copy(io.Discard, rc); err != nil {
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
