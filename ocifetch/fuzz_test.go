package ocifetch

import (
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
		classify(raw, types.MediaType(mt))
	})
}
