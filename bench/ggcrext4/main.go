// Command ggcrext4 is the go-containerregistry + hcsshim pipeline: it flattens a registry
// image with mutate.Extract (which applies whiteouts) and writes the stream as an ext4 image
// with hcsshim's tar2ext4.
//
//	ggcrext4 [-inline] 127.0.0.1:5077/bench:latest out.img
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/Microsoft/hcsshim/ext4/tar2ext4"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func main() {
	inline := flag.Bool("inline", false, "store small files in their inodes (tar2ext4.InlineData)")
	flag.Parse()
	if flag.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: ggcrext4 [-inline] REF OUT")
		os.Exit(2)
	}
	if err := run(flag.Arg(0), flag.Arg(1), *inline); err != nil {
		fmt.Fprintln(os.Stderr, "ggcrext4:", err)
		os.Exit(1)
	}
}

func run(ref, out string, inline bool) (err error) {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return err
	}
	img, err := remote.Image(r)
	if err != nil {
		return err
	}
	rc := mutate.Extract(img)
	defer rc.Close()
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	var opts []tar2ext4.Option
	if inline {
		opts = append(opts, tar2ext4.InlineData)
	}
	if err := tar2ext4.Convert(rc, f, opts...); err != nil {
		return fmt.Errorf("tar2ext4: %w", err)
	}
	return nil
}
