// Package tartest builds small layer tars, layers and images for tests.
//
// Entries are plain values, so a test reads as the archive it describes:
//
//	layer := tartest.Tar(
//		tartest.Dir("etc"),
//		tartest.File("etc/hostname", "box\n", tartest.Mode(0o644)),
//		tartest.Whiteout("etc/motd"),
//	)
package tartest

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"io"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Epoch is the default modification time of every entry: a fixed instant, so archives are
// deterministic.
var Epoch = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

// Entry is one tar member: a header and, for regular files, its body.
type Entry struct {
	Hdr  tar.Header
	Body []byte
}

// Opt changes an entry's header.
type Opt func(*tar.Header)

// Mode sets the permission bits (and setuid, setgid, sticky).
func Mode(m int64) Opt { return func(h *tar.Header) { h.Mode = m } }

// Owner sets the numeric owner.
func Owner(uid, gid int) Opt { return func(h *tar.Header) { h.Uid, h.Gid = uid, gid } }

// Mtime sets the modification time (and the access time to the same instant).
func Mtime(t time.Time) Opt {
	return func(h *tar.Header) {
		h.ModTime, h.AccessTime = t, t
		h.Format = tar.FormatPAX // the only format that keeps nanoseconds and pre-1970 times
	}
}

// Xattr adds an extended attribute as a SCHILY.xattr PAX record.
func Xattr(name, value string) Opt {
	return func(h *tar.Header) {
		if h.PAXRecords == nil {
			h.PAXRecords = map[string]string{}
		}
		h.PAXRecords["SCHILY.xattr."+name] = value
		h.Format = tar.FormatPAX
	}
}

// ACL encodes POSIX ACL entries, given as tag, perm, id triples, as the value of a
// system.posix_acl_access or system.posix_acl_default attribute (the kernel's VFS format,
// version 2), byte by byte, independent of any encoder under test.
func ACL(triples ...uint32) string {
	b := []byte{2, 0, 0, 0}
	for i := 0; i+2 < len(triples); i += 3 {
		b = binary.LittleEndian.AppendUint16(b, uint16(triples[i]))
		b = binary.LittleEndian.AppendUint16(b, uint16(triples[i+1]))
		b = binary.LittleEndian.AppendUint32(b, triples[i+2])
	}
	return string(b)
}

// PAX adds a raw PAX record.
func PAX(key, value string) Opt {
	return func(h *tar.Header) {
		if h.PAXRecords == nil {
			h.PAXRecords = map[string]string{}
		}
		h.PAXRecords[key] = value
		h.Format = tar.FormatPAX
	}
}

// Type overrides the type flag.
func Type(flag byte) Opt { return func(h *tar.Header) { h.Typeflag = flag } }

func entry(h tar.Header, body []byte, opts []Opt) Entry {
	if h.ModTime.IsZero() {
		h.ModTime = Epoch
	}
	for _, o := range opts {
		o(&h)
	}
	return Entry{Hdr: h, Body: body}
}

// Dir is a directory, mode 0755 unless changed.
func Dir(name string, opts ...Opt) Entry {
	return entry(tar.Header{Name: name + "/", Typeflag: tar.TypeDir, Mode: 0o755}, nil, opts)
}

// File is a regular file with the given content, mode 0644 unless changed.
func File(name, content string, opts ...Opt) Entry {
	return entry(tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(content))}, []byte(content), opts)
}

// Symlink is a symbolic link to target.
func Symlink(name, target string, opts ...Opt) Entry {
	return entry(tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: target, Mode: 0o777}, nil, opts)
}

// Link is a hard link to target, an archive path.
func Link(name, target string, opts ...Opt) Entry {
	return entry(tar.Header{Name: name, Typeflag: tar.TypeLink, Linkname: target, Mode: 0o644}, nil, opts)
}

// Char is a character device.
func Char(name string, major, minor int64, opts ...Opt) Entry {
	return entry(tar.Header{Name: name, Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: major, Devminor: minor}, nil, opts)
}

// Block is a block device.
func Block(name string, major, minor int64, opts ...Opt) Entry {
	return entry(tar.Header{Name: name, Typeflag: tar.TypeBlock, Mode: 0o660, Devmajor: major, Devminor: minor}, nil, opts)
}

// Fifo is a named pipe.
func Fifo(name string, opts ...Opt) Entry {
	return entry(tar.Header{Name: name, Typeflag: tar.TypeFifo, Mode: 0o644}, nil, opts)
}

// Whiteout is the ".wh." marker that deletes name from lower layers.
func Whiteout(name string) Entry {
	dir, base := split(name)
	return File(dir+".wh."+base, "", Mode(0))
}

// Opaque is the ".wh..wh..opq" marker that hides the lower-layer children of dir.
func Opaque(dir string) Entry {
	if dir == "" || dir == "." {
		return File(".wh..wh..opq", "", Mode(0))
	}
	return File(dir+"/.wh..wh..opq", "", Mode(0))
}

func split(name string) (dir, base string) {
	for i := len(name) - 1; i >= 0; i-- {
		if name[i] == '/' {
			return name[:i+1], name[i+1:]
		}
	}
	return "", name
}

// Tar encodes the entries as an uncompressed tar, in the order given.
func Tar(entries ...Entry) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.Hdr
		if err := tw.WriteHeader(&h); err != nil {
			panic("tartest: " + err.Error()) // test input is static; a bad one is a bug in the test
		}
		if len(e.Body) > 0 {
			if _, err := tw.Write(e.Body); err != nil {
				panic("tartest: " + err.Error())
			}
		}
	}
	if err := tw.Close(); err != nil {
		panic("tartest: " + err.Error())
	}
	return buf.Bytes()
}

// Layer makes a gzip-compressed layer from an uncompressed tar.
func Layer(tarball_ []byte) v1.Layer {
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(tarball_)), nil
	})
	if err != nil {
		panic("tartest: " + err.Error())
	}
	return l
}

// Image stacks the given uncompressed tars, bottom first, into a linux/amd64 image.
func Image(layers ...[]byte) v1.Image {
	img := empty.Image
	ls := make([]v1.Layer, len(layers))
	for i, b := range layers {
		ls[i] = Layer(b)
	}
	img, err := mutate.AppendLayers(img, ls...)
	if err != nil {
		panic("tartest: " + err.Error())
	}
	cf, err := img.ConfigFile()
	if err != nil {
		panic("tartest: " + err.Error())
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		panic("tartest: " + err.Error())
	}
	return img
}
