package ocifetch_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/img2ext4/img2ext4/ocifetch"
)

// writeExampleLayout writes a two-layer image tagged "v1" to an OCI layout
// in a new temporary directory.
func writeExampleLayout() (string, error) {
	dir, err := os.MkdirTemp("", "ocifetch-example-")
	if err != nil {
		return "", err
	}
	img, err := random.Image(1024, 2)
	if err != nil {
		return dir, err
	}
	p, err := layout.Write(filepath.Join(dir, "layout"), empty.Index)
	if err != nil {
		return dir, err
	}
	err = p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "v1"}))
	return dir, err
}

func ExampleImage() {
	dir, err := writeExampleLayout()
	defer os.RemoveAll(dir)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	img, err := ocifetch.Image(ctx, "oci:"+filepath.Join(dir, "layout")+":v1",
		ocifetch.WithPlatform(v1.Platform{OS: "linux", Architecture: "amd64"}))
	if err != nil {
		log.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("layers:", len(layers))
	// Output: layers: 2
}

func ExamplePrefetch() {
	dir, err := writeExampleLayout()
	defer os.RemoveAll(dir)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	img, err := ocifetch.Image(ctx, "oci:"+filepath.Join(dir, "layout")+":v1")
	if err != nil {
		log.Fatal(err)
	}
	p, err := ocifetch.Prefetch(ctx, img, ocifetch.WithJobs(2), ocifetch.WithTempDir(dir))
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	// Apply the layers strictly in order; each is read as its blob downloads.
	for i, l := range p.Layers() {
		rc, err := l.Compressed()
		if err != nil {
			log.Fatal(err)
		}
		_, err = io.Copy(io.Discard, rc) // layerapply would decompress and apply here
		rc.Close()
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("layer", i, "verified")
	}
	// Output:
	// layer 0 verified
	// layer 1 verified
}
