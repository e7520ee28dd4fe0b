package img2ext4_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/img2ext4/img2ext4"
)

func ExampleConvert() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	res, err := img2ext4.Convert(context.Background(), "oci:testdata/hello-oci:latest", filepath.Join(dir, "rootfs.img"))
	if err != nil {
		fmt.Println(err)
		return
	}
	// The image holds linux/amd64 and linux/arm64; Convert picks the host's.
	fs := res.Filesystem
	fmt.Println(res.Layers, "layers,", res.Platform.OS, "->", fs.Size>>20, "MiB,", fs.Available()>>20, "MiB available")
	// Output: 3 layers, linux -> 72 MiB, 64 MiB available
}
