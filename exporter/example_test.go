package exporter_test

import (
	"context"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/img2ext4/img2ext4/exporter"
	"github.com/img2ext4/img2ext4/ocifetch"
)

// Image in Auto mode reads what ocifetch knows natively, running no program; a
// "containers-storage:" reference would go through skopeo.
func ExampleImage() {
	ctx := context.Background()
	img, release, err := exporter.Image(ctx, "oci:../testdata/hello-oci:latest", exporter.Auto,
		ocifetch.WithPlatform(v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}))
	defer release() // after the layers have been read
	if err != nil {
		fmt.Println(err)
		return
	}
	layers, _ := img.Layers()
	cf, _ := img.ConfigFile()
	fmt.Println(len(layers), "layers for", cf.Architecture)
	// Output: 3 layers for arm64
}
