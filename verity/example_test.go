package verity_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/img2ext4/img2ext4/verity"
)

// Example appends the hash tree of a small image to the image file itself, as
// `veritysetup format IMG IMG --hash-offset=SIZE` would, and prints what opening it
// takes. (veritysetup format computes the same root hash for this file.)
func Example() {
	dir, err := os.MkdirTemp("", "verity-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	img := filepath.Join(dir, "disk.img")
	data := bytes.Repeat([]byte("img2ext4"), 200*verity.BlockSize/8) // 200 blocks
	if err := os.WriteFile(img, data, 0o644); err != nil {
		panic(err)
	}
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		panic(err)
	}
	defer f.Close()
	size := int64(len(data))
	tree, err := verity.Write(context.Background(), f, size, f, size, verity.WithSalt([]byte("salt")))
	if err != nil {
		panic(err)
	}
	fmt.Println("root hash:", tree.RootHashHex())
	fmt.Println("salt:", tree.SaltHex())
	fmt.Println("data blocks:", tree.DataBlocks, "hash offset:", tree.HashOffset, "hash size:", tree.HashSize)
	fmt.Println(tree.OpenArgs("disk.img", "verified", "disk.img")[5:])
	// Output:
	// root hash: 7d94ca45521db687abc5bfe9c4a37b2d81e055dd84d8db3deb34511f01a6c97a
	// salt: 73616c74
	// data blocks: 200 hash offset: 819200 hash size: 16384
	// [7d94ca45521db687abc5bfe9c4a37b2d81e055dd84d8db3deb34511f01a6c97a --hash-offset=819200]
}
