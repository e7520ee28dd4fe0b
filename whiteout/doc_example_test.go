package whiteout_test

import (
	"fmt"

	"github.com/img2ext4/img2ext4/whiteout"
)

func ExampleClassify() {
	for _, name := range []string{"etc/.wh.motd", "var/cache/.wh..wh..opq", ".wh..wh.plnk/1.2", "usr/bin/ls"} {
		k, target := whiteout.Classify(name)
		fmt.Println(k, target)
	}
	// Output:
	// whiteout etc/motd
	// opaque var/cache
	// aufs-meta .wh..wh.plnk/1.2
	// none usr/bin/ls
}
