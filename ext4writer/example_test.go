package ext4writer_test

import (
	"fmt"
	"io/fs"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/img2ext4/img2ext4/ext4writer"
)

func Example() {
	dir, err := os.MkdirTemp("", "ext4writer-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	f, err := os.Create(filepath.Join(dir, "rootfs.ext4"))
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()

	w, err := ext4writer.New(f, ext4writer.WithLabel("rootfs"), ext4writer.WithFreeSpace(1<<20))
	if err != nil {
		log.Fatal(err)
	}
	mtime := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := w.Create("etc", &ext4writer.File{Mode: fs.ModeDir | 0o755, Mtime: mtime}); err != nil {
		log.Fatal(err)
	}
	body := "hello\n"
	if err := w.Create("etc/motd", &ext4writer.File{Mode: 0o644, Size: int64(len(body)), Mtime: mtime}); err != nil {
		log.Fatal(err)
	}
	if _, err := w.ReadFrom(strings.NewReader(body)); err != nil {
		log.Fatal(err)
	}
	if err := w.Create("motd", &ext4writer.File{Mode: fs.ModeSymlink | 0o777, Linkname: "etc/motd"}); err != nil {
		log.Fatal(err)
	}
	if err := w.Close(); err != nil {
		log.Fatal(err)
	}
	size, _ := w.MinSize()
	fi, err := f.Stat()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(size == fi.Size(), size%4096)
	// Output: true 0
}
