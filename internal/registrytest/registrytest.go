// Package registrytest starts real registries on loopback for tests: go-containerregistry's
// pkg/registry in process (with the OCI 1.1 referrers API) and Debian's docker-registry
// (distribution 2.8, without it) as a child process, each behind a handler that counts
// the requests it answers, by kind and by blob digest, for tests that assert how many
// manifest and blob requests an operation makes.
package registrytest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Registry is a registry serving on loopback.
type Registry struct {
	// Host is host:port, for references ("127.0.0.1:PORT/repo:tag").
	Host string
	// Storage is the directory holding the blobs; BlobPath gives a blob's file.
	Storage string
	// Referrers tells whether the registry has the referrers API.
	Referrers bool
	// Name says which registry it is, for subtests.
	Name string

	blobPath func(hex string) string
	*Counter
}

// BlobPath returns the file holding the blob with the SHA-256 hex digest hex.
func (r *Registry) BlobPath(hex string) string { return r.blobPath(hex) }

// Push writes img to the registry as repoTag ("test/img:1") and returns the reference,
// host/repo:tag. The requests of the push are not counted.
func (r *Registry) Push(t testing.TB, repoTag string, img v1.Image) string {
	t.Helper()
	ref, err := name.ParseReference(r.Host + "/" + repoTag)
	if err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	counts, blobs := maps.Clone(r.counts), maps.Clone(r.blobs)
	r.mu.Unlock()
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	r.counts, r.blobs = counts, blobs
	r.mu.Unlock()
	return ref.String()
}

// Counter counts the requests a registry answers, by kind and by blob digest. Its methods
// may be called while requests are being served.
type Counter struct {
	mu     sync.Mutex
	counts map[string]int // by kind
	blobs  map[string]int // GET and HEAD requests by blob digest
}

// Kinds of requests a Counter counts.
const (
	BlobHead     = "HEAD blob"
	BlobGet      = "GET blob"
	BlobUpload   = "POST upload" // the start of a blob upload
	ManifestHead = "HEAD manifest"
	ManifestGet  = "GET manifest"
	ManifestPut  = "PUT manifest"
	Referrers    = "GET referrers"
	Other        = "other" // pings, upload chunks, tag lists, deletions
)

// Count returns how many requests of the given kinds were answered since the last Reset,
// summed.
func (c *Counter) Count(kinds ...string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, k := range kinds {
		n += c.counts[k]
	}
	return n
}

// Counts returns the non-zero counts by kind since the last Reset; it is empty when no
// request at all was answered.
func (c *Counter) Counts() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.counts)
}

// Blobs returns how many GET and HEAD requests asked for each blob since the last Reset,
// by digest ("sha256:…"); blobs never asked for are absent.
func (c *Counter) Blobs() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.blobs)
}

// Reset sets every count to zero.
func (c *Counter) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.counts, c.blobs = map[string]int{}, map[string]int{}
}

func (c *Counter) wrap(h http.Handler) http.Handler {
	c.Reset()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		blob := ""
		if i := strings.LastIndex(p, "/blobs/sha256:"); i >= 0 {
			blob = p[i+len("/blobs/"):]
		}
		var kind string
		switch {
		case strings.Contains(p, "/blobs/uploads/") && r.Method == http.MethodPost:
			kind = BlobUpload
		case blob != "" && r.Method == http.MethodHead:
			kind = BlobHead
		case blob != "" && r.Method == http.MethodGet:
			kind = BlobGet
		case strings.Contains(p, "/manifests/") && r.Method == http.MethodHead:
			kind = ManifestHead
		case strings.Contains(p, "/manifests/") && r.Method == http.MethodGet:
			kind = ManifestGet
		case strings.Contains(p, "/manifests/") && r.Method == http.MethodPut:
			kind = ManifestPut
		case strings.Contains(p, "/referrers/"):
			kind = Referrers
		default:
			kind = Other
		}
		c.mu.Lock()
		c.counts[kind]++
		if kind == BlobHead || kind == BlobGet {
			c.blobs[blob]++
		}
		c.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

// diskBlobs keeps blobs in files as go-containerregistry's disk handler does, but, as
// distribution does, tells a blob's size from its file without hashing it again, so that
// a blob corrupted in storage is served as it is.
type diskBlobs struct {
	registry.BlobHandler
	dir string
}

func (d diskBlobs) Stat(_ context.Context, _ string, h v1.Hash) (int64, error) {
	fi, err := os.Stat(filepath.Join(d.dir, h.Algorithm, h.Hex))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, registry.ErrNotFound
	}
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

func (d diskBlobs) Put(ctx context.Context, repo string, h v1.Hash, rc io.ReadCloser) error {
	return d.BlobHandler.(registry.BlobPutHandler).Put(ctx, repo, h, rc)
}

// GGCR starts go-containerregistry's registry in process, with the referrers API, its
// blobs in files under a temporary directory.
func GGCR(t testing.TB) *Registry {
	t.Helper()
	dir := t.TempDir()
	r := &Registry{Storage: dir, Referrers: true, Name: "ggcr", Counter: &Counter{},
		blobPath: func(hex string) string { return filepath.Join(dir, "sha256", hex) }}
	h := registry.New(registry.WithReferrersSupport(true), registry.WithBlobHandler(diskBlobs{registry.NewDiskBlobHandler(dir), dir}),
		registry.Logger(log.New(io.Discard, "", 0)))
	s := httptest.NewServer(r.wrap(h))
	t.Cleanup(s.Close)
	r.Host = strings.TrimPrefix(s.URL, "http://")
	return r
}

// Distribution starts Debian's docker-registry (distribution 2.8, no referrers API) on
// 127.0.0.1 with its storage in a temporary directory, behind a counting proxy. It skips
// the test when the program is missing, before doing anything else.
func Distribution(t testing.TB) *Registry {
	t.Helper()
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		t.Skip("docker-registry not installed (Debian package docker-registry)")
	}
	dir := t.TempDir()
	storage := filepath.Join(dir, "storage")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, storage, addr)
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", cfgPath)
	logf, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("docker-registry did not answer on %s: %v\n%s", addr, err, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	u, _ := url.Parse("http://" + addr)
	r := &Registry{Storage: storage, Name: "distribution", Counter: &Counter{},
		blobPath: func(hex string) string {
			return filepath.Join(storage, "docker", "registry", "v2", "blobs", "sha256", hex[:2], hex, "data")
		}}
	proxy := httputil.NewSingleHostReverseProxy(u)
	proxy.ErrorLog = log.New(io.Discard, "", 0) // a client that stops reading is no error here
	s := httptest.NewServer(r.wrap(proxy))
	t.Cleanup(s.Close)
	r.Host = strings.TrimPrefix(s.URL, "http://")
	return r
}
