package store_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/img2ext4/img2ext4/store"
)

func Example() {
	root, _ := os.MkdirTemp("", "store-example-")
	defer os.RemoveAll(root)
	s, err := store.Open(root)
	if err != nil {
		panic(err)
	}
	in := store.Inputs{Source: "sha256:1234", Platform: "linux/amd64", Format: "ext4", Version: "example"}
	b := store.Builder{Build: func(ctx context.Context, dir string) ([]byte, error) {
		return []byte(`{"note":"made once"}`), os.WriteFile(filepath.Join(dir, "image"), []byte("the image"), 0o644)
	}}
	for range 2 {
		a, err := s.Build(context.Background(), in.Key(), in, b)
		if err != nil {
			panic(err)
		}
		data, _ := os.ReadFile(a.Path("image"))
		fmt.Printf("built %v: %s, %d bytes, %s\n", a.Built, data, a.Size, a.Meta)
	}
	// Output:
	// built true: the image, 9 bytes, {"note":"made once"}
	// built false: the image, 9 bytes, {"note":"made once"}
}
