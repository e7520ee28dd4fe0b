// Command mkfscmp writes a directory tree into the smallest ext4 image
// ext4writer makes of it (WithFreeSpace(0)) and prints the image's size
// in bytes and the inodes it uses, for mkfs-size.sh to compare with
// mke2fs -d.
//
//	mkfscmp DIR OUT
package main

import (
	"fmt"
	"io/fs"
	"log"
	"os"
	"path/filepath"
	"syscall"

	"github.com/img2ext4/img2ext4/ext4writer"
)

func main() {
	if len(os.Args) != 3 {
		log.Fatal("usage: mkfscmp DIR OUT")
	}
	root, out := os.Args[1], os.Args[2]
	f, err := os.Create(out)
	if err != nil {
		log.Fatal(err)
	}
	w, err := ext4writer.New(f, ext4writer.WithFreeSpace(0))
	if err != nil {
		log.Fatal(err)
	}
	links := map[uint64]string{}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		hdr := &ext4writer.File{Mode: fi.Mode(), UID: st.Uid, GID: st.Gid, Mtime: fi.ModTime()}
		switch {
		case fi.Mode().IsRegular():
			if st.Nlink > 1 {
				if first, ok := links[st.Ino]; ok {
					return w.Link(first, rel)
				}
				links[st.Ino] = rel
			}
			hdr.Size = fi.Size()
			if err := w.Create(rel, hdr); err != nil {
				return err
			}
			body, err := os.Open(p)
			if err != nil {
				return err
			}
			defer body.Close()
			_, err = w.ReadFrom(body)
			return err
		case fi.Mode()&fs.ModeSymlink != 0:
			if hdr.Linkname, err = os.Readlink(p); err != nil {
				return err
			}
		case fi.IsDir():
		default:
			return nil // devices, sockets: none in the trees compared
		}
		return w.Create(rel, hdr)
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := w.Close(); err != nil {
		log.Fatal(err)
	}
	if err := f.Close(); err != nil {
		log.Fatal(err)
	}
	st := w.Stats()
	fmt.Println(st.Size, st.Inodes-st.FreeInodes)
}
