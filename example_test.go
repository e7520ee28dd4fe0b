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
	st, _ := os.Stat(filepath.Join(dir, "rootfs.img"))
	// The image holds linux/amd64 and linux/arm64; Convert picks the host's.
	fmt.Println(res.Layers, "layers,", res.Platform.OS, "->", st.Size()>>20, "MiB")
	// Output: 3 layers, linux -> 6 MiB
}
