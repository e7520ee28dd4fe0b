package ocifetch

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseReference(t *testing.T) {
	dir := t.TempDir()
	colonDir := filepath.Join(dir, "with:colon")
	if err := os.Mkdir(colonDir, 0o755); err != nil {
		t.Fatal(err)
	}
	const dgst = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	tests := []struct {
		name, in  string
		transport refTransport
		ref       string // registry: normalised name
		scheme    scheme
		path, tag string
		wantErr   error // nil: any error when errAny
		errAny    bool
	}{
		{name: "short", in: "alpine", ref: "index.docker.io/library/alpine:latest"},
		{name: "short tag", in: "alpine:3.20", ref: "index.docker.io/library/alpine:3.20"},
		{name: "full", in: "docker.io/library/alpine:3.20", ref: "index.docker.io/library/alpine:3.20"},
		{name: "port digest", in: "host:5000/repo@" + dgst, ref: "host:5000/repo@" + dgst},
		{name: "docker prefix", in: "docker://quay.io/ns/img:v1", ref: "quay.io/ns/img:v1"},
		{name: "http", in: "http://10.1.2.3:5000/repo:tag", ref: "10.1.2.3:5000/repo:tag", scheme: schemeHTTP},
		{name: "https", in: "https://reg.example/repo", ref: "reg.example/repo:latest", scheme: schemeHTTPS},
		{name: "localhost", in: "localhost:5000/repo", ref: "localhost:5000/repo:latest"},
		{name: "oci", in: "oci:/tmp/layout", transport: transportOCI, path: "/tmp/layout"},
		{name: "oci tag", in: "oci:/tmp/layout:v1", transport: transportOCI, path: "/tmp/layout", tag: "v1"},
		{name: "oci full tag", in: "oci:lay:docker.io/library/alpine:3.20", transport: transportOCI, path: "lay", tag: "docker.io/library/alpine:3.20"},
		{name: "oci existing colon dir", in: "oci:" + colonDir, transport: transportOCI, path: colonDir},
		{name: "oci-archive", in: "oci-archive:img.tar", transport: transportOCIArchive, path: "img.tar"},
		{name: "oci-archive tag", in: "oci-archive:img.tar:latest", transport: transportOCIArchive, path: "img.tar", tag: "latest"},
		{name: "docker-archive", in: "docker-archive:save.tar", transport: transportDockerArchive, path: "save.tar"},
		{name: "docker-archive ref", in: "docker-archive:save.tar:alpine:3.20", transport: transportDockerArchive, path: "save.tar", tag: "alpine:3.20"},
		{name: "docker-archive index", in: "docker-archive:save.tar:@1", transport: transportDockerArchive, path: "save.tar", tag: "@1"},
		{name: "empty", in: "", errAny: true},
		{name: "oci no path", in: "oci:", errAny: true},
		{name: "bad name", in: "UPPER/Case:tag", errAny: true},
		{name: "http no repo", in: "http://host:5000", errAny: true},
		{name: "containers-storage", in: "containers-storage:alpine", wantErr: ErrUnsupportedTransport},
		{name: "docker-daemon", in: "docker-daemon:alpine:latest", transport: transportDockerDaemon, path: "alpine:latest"},
		{name: "docker-daemon host", in: "docker-daemon:127.0.0.1:5000/a/b:v1", transport: transportDockerDaemon, path: "127.0.0.1:5000/a/b:v1"},
		{name: "docker-daemon digest", in: "docker-daemon:a/b@" + dgst, transport: transportDockerDaemon, path: "a/b@" + dgst},
		{name: "docker-daemon id", in: "docker-daemon:" + dgst, transport: transportDockerDaemon, path: dgst},
		{name: "docker-daemon empty", in: "docker-daemon:", errAny: true},
		{name: "docker-daemon bad", in: "docker-daemon:UPPER/Case", errAny: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := parseReference(tc.in)
			if tc.errAny || tc.wantErr != nil {
				if err == nil {
					t.Fatalf("parseReference(%q) = %v, want error", tc.in, r)
				}
				if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
					t.Fatalf("error %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.transport != tc.transport {
				t.Errorf("transport %v, want %v", r.transport, tc.transport)
			}
			if tc.transport == transportRegistry {
				if got := r.ref.Name(); got != tc.ref {
					t.Errorf("ref %q, want %q", got, tc.ref)
				}
				if r.scheme != tc.scheme {
					t.Errorf("scheme %v, want %v", r.scheme, tc.scheme)
				}
				return
			}
			if r.path != tc.path || r.tag != tc.tag {
				t.Errorf("path, tag = %q, %q; want %q, %q", r.path, r.tag, tc.path, tc.tag)
			}
		})
	}
}

func TestSchemePolicy(t *testing.T) {
	p := &schemePolicy{inner: nil, host: "reg.example", allowHTTPS: true}
	req, _ := http.NewRequest(http.MethodGet, "http://reg.example/v2/", nil)
	if _, err := p.RoundTrip(req); err == nil || !strings.Contains(err.Error(), "WithInsecure") {
		t.Fatalf("plain HTTP to a remote host: err = %v, want refusal", err)
	}
	for host, want := range map[string]bool{
		"localhost:5000": true, "127.0.0.1:1234": true, "127.5.6.7": true, "[::1]:5000": true,
		"10.0.0.1:5000": false, "example.com": false, "localhost.example.com": false,
	} {
		if got := isLoopback(host); got != want {
			t.Errorf("isLoopback(%q) = %v, want %v", host, got, want)
		}
	}
}
