package ocifetch

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/google/go-containerregistry/pkg/v1/types"
)

// FuzzParseReference checks that any reference string parses or fails
// without panicking, and that a parsed registry reference has a repository.
func FuzzParseReference(f *testing.F) {
	for _, s := range []string{
		"alpine", "docker.io/library/alpine:3.20", "host:5000/repo@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"docker://quay.io/a/b", "http://127.0.0.1:5000/r:t", "oci:/x:tag", "oci-archive:a.tar", "docker-archive:s.tar:@0",
		"dir:/x", "localhost:5000/x", "", ":", "oci:",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := parseReference(s)
		if err != nil {
			return
		}
		if r.transport == transportRegistry && r.ref.Context().RepositoryStr() == "" {
			t.Errorf("%q: registry reference without repository", s)
		}
		if r.transport != transportRegistry && r.path == "" {
			t.Errorf("%q: local reference without path", s)
		}
	})
}

// FuzzClassify checks that any manifest bytes are classified or refused
// without panicking.
func FuzzClassify(f *testing.F) {
	f.Add([]byte(schema1Manifest), "")
	f.Add([]byte(`{"schemaVersion":2,"manifests":[]}`), string(types.OCIImageIndex))
	f.Add([]byte(`{"schemaVersion":2,"config":{},"layers":[]}`), "application/json")
	f.Fuzz(func(t *testing.T, raw []byte, mt string) {
		classify(raw, types.MediaType(mt), true)
	})
}

// FuzzIndexTar checks that any archive bytes index or fail without panicking, and that
// every indexed file reads back whole: for a regular file, exactly the bytes archive/tar
// gives for that name when it reads the archive from the start (decompressed with
// compress/gzip or klauspost's zstd, not layerstream), the last entry of a name winning;
// for a hard link, the bytes of its target at that point; for any name, its indexed size.
func FuzzIndexTar(f *testing.F) {
	dir := f.TempDir()
	seed := filepath.Join(dir, "seed.tar")
	writeSeed := func(names []string, files map[string][]byte) []byte {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, n := range names {
			tw.WriteHeader(&tar.Header{Name: n, Typeflag: tar.TypeReg, Size: int64(len(files[n])), Mode: 0o644})
			tw.Write(files[n])
		}
		tw.WriteHeader(&tar.Header{Name: "link", Typeflag: tar.TypeSymlink, Linkname: "./a"})
		tw.WriteHeader(&tar.Header{Name: "hard", Typeflag: tar.TypeLink, Linkname: "b/c"})
		tw.Close()
		return buf.Bytes()
	}
	plain := writeSeed([]string{"a", "./b/c", "a"}, map[string][]byte{"a": []byte("hello"), "./b/c": []byte("x")})
	f.Add(plain)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(plain)
	zw.Close()
	f.Add(gz.Bytes())
	f.Add([]byte{0x1f, 0x8b, 0, 0})
	// A PAX 1.0 sparse entry, 10 bytes with a hole, stored as its map block and 4 data
	// bytes: archive/tar hands over the stored bytes, and so must the index.
	var sp bytes.Buffer
	tw := tar.NewWriter(&sp)
	stored := append(append([]byte("2\n0\n2\n8\n2\n"), make([]byte, 512-11)...), "abcd"...)
	tw.WriteHeader(&tar.Header{Name: "GNUSparseFile.0/s", Typeflag: tar.TypeReg, Size: int64(len(stored)), Format: tar.FormatPAX,
		PAXRecords: map[string]string{"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": "s", "GNU.sparse.realsize": "10"}})
	tw.Write(stored)
	tw.Close()
	f.Add(sp.Bytes())
	// Small inputs can decompress to a lot (zstd RLE blocks): keep runs quick.
	defer func(old int64) { maxArchiveSize = old }(maxArchiveSize)
	maxArchiveSize = 1 << 20
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := os.WriteFile(seed, b, 0o644); err != nil {
			t.Fatal(err)
		}
		fsys, err := indexTar(seed, dir)
		if err != nil {
			return
		}
		if fsys.shared != nil {
			defer fsys.shared.Close()
		}
		want := readArchive(t, b)
		for name, e := range fsys.files {
			rc, err := fsys.open(name)
			if err != nil {
				t.Fatalf("open indexed %q: %v", name, err)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				t.Fatalf("read indexed %q: %v", name, err)
			}
			if int64(len(got)) != e.size {
				t.Fatalf("%q: read %d bytes, indexed size %d", name, len(got), e.size)
			}
			if w, ok := want[name]; ok && !bytes.Equal(got, w) {
				t.Fatalf("%q: read %q, archive/tar reads %q", name, got, w)
			}
		}
	})
}

// readArchive reads an archive that indexTar accepted from its start with archive/tar:
// each regular file's content by clean name, the last entry winning, and each hard link's
// target content at the link. It fails the test when archive/tar cannot read what
// indexTar indexed.
func readArchive(t *testing.T, b []byte) map[string][]byte {
	var r io.Reader = bytes.NewReader(b)
	switch {
	case bytes.HasPrefix(b, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(r)
		if err != nil {
			t.Fatalf("indexTar accepts what compress/gzip refuses: %v", err)
		}
		r = zr
	case bytes.HasPrefix(b, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(r)
		if err != nil {
			t.Fatalf("indexTar accepts what zstd refuses: %v", err)
		}
		defer zr.Close()
		r = zr
	}
	out := map[string][]byte{}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("indexTar accepts what archive/tar cannot read: %v", err)
		}
		name := strings.TrimPrefix(path.Clean("/"+hdr.Name), "/")
		switch hdr.Typeflag {
		case tar.TypeReg:
			body, err := io.ReadAll(tr)
			if err != nil {
				t.Fatalf("indexTar accepts a body archive/tar cannot read: %s: %v", name, err)
			}
			out[name] = body
		case tar.TypeLink:
			if body, ok := out[strings.TrimPrefix(path.Clean("/"+hdr.Linkname), "/")]; ok {
				out[name] = body
			} else {
				delete(out, name)
			}
		default:
			delete(out, name)
		}
	}
}
