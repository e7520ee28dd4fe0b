package ocifetch

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"

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

// FuzzIndexTar checks that any archive bytes index or fail without
// panicking, and that every indexed file reads back at its recorded size.
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
		tw.Close()
		return buf.Bytes()
	}
	f.Add(writeSeed([]string{"a", "./b/c"}, map[string][]byte{"a": []byte("hello"), "./b/c": []byte("x")}))
	f.Add([]byte{0x1f, 0x8b, 0, 0})
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
		for name, e := range fsys.files {
			rc, err := fsys.open(name)
			if err != nil {
				t.Fatalf("open indexed %q: %v", name, err)
			}
			n, _ := io.Copy(io.Discard, rc)
			rc.Close()
			if n > e.size {
				t.Fatalf("%q: read %d bytes, indexed size %d", name, n, e.size)
			}
		}
	})
}
