// Package regtest starts go-containerregistry's in-process registry on loopback behind a
// handler that counts the requests it serves, by kind, for tests that assert how many
// manifest and blob requests an operation makes.
package regtest

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Registry is a running registry that counts requests.
type Registry struct {
	// Host is host:port of the registry.
	Host  string
	mu    sync.Mutex
	n     Counts
	blobs map[string]int // GET and HEAD requests by blob digest
}

// Counts are the requests served so far, by kind.
type Counts struct {
	// Manifests counts GET and HEAD requests for manifests and indexes.
	Manifests int
	// Blobs counts GET and HEAD requests for blobs (configs and layers).
	Blobs int
	// Other counts everything else: pings, uploads, tag lists.
	Other int
}

// Start starts a registry for the test's duration.
func Start(t testing.TB) *Registry {
	t.Helper()
	r := &Registry{blobs: map[string]int{}}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		read := req.Method == http.MethodGet || req.Method == http.MethodHead
		switch {
		case read && strings.Contains(req.URL.Path, "/manifests/"):
			r.n.Manifests++
		case read && strings.Contains(req.URL.Path, "/blobs/"):
			r.n.Blobs++
			r.blobs[req.URL.Path[strings.LastIndex(req.URL.Path, "/")+1:]]++
		default:
			r.n.Other++
		}
		r.mu.Unlock()
		reg.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	r.Host = u.Host
	return r
}

// Push writes img to the registry as repo:tag ("test/img", "1") and returns the reference,
// host/repo:tag. Pushing is not counted.
func (r *Registry) Push(t testing.TB, repoTag string, img v1.Image) string {
	t.Helper()
	ref, err := name.ParseReference(r.Host + "/" + repoTag)
	if err != nil {
		t.Fatal(err)
	}
	before := r.Counts()
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	r.n = before
	clear(r.blobs)
	r.mu.Unlock()
	return ref.String()
}

// Counts returns the requests served so far.
func (r *Registry) Counts() Counts {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

// Reset sets the counts to zero.
func (r *Registry) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n = Counts{}
	clear(r.blobs)
}

// BlobRequests returns how many GET and HEAD requests asked for the blob of digest
// ("sha256:…").
func (r *Registry) BlobRequests(digest string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.blobs[digest]
}
