package layerapply_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"

	"github.com/img2ext4/img2ext4/internal/tartest"
	"github.com/img2ext4/img2ext4/layerapply"
)

func ExampleApply() {
	img := tartest.Image(
		tartest.Tar(tartest.Dir("etc"), tartest.File("etc/motd", "hi"), tartest.File("etc/hosts", "")),
		tartest.Tar(tartest.Whiteout("etc/motd"), tartest.File("etc/issue", "welcome")),
	)
	var flat bytes.Buffer
	sink, _ := layerapply.NewTar(&flat, "")
	if err := layerapply.Apply(context.Background(), sink, img); err != nil {
		fmt.Println(err)
		return
	}
	sink.Close()
	tr := tar.NewReader(&flat)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		fmt.Println(h.Name)
	}
	// Output:
	// etc/
	// etc/hosts
	// etc/issue
}
