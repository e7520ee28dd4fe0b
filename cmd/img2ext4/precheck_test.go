package main

import (
	"bytes"
	"context"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/img2ext4/img2ext4/internal/tartest"
)

// slowRegistry serves an image of a small layer and a layer of 2 MiB of incompressible
// bytes (the last when bigLast), from a loopback registry whose layer blobs never finish
// unless release is closed. It counts every request and every layer blob request.
type slowRegistry struct {
	ref              string
	requests, layers atomic.Int32
	release          chan struct{}
}

func newSlowRegistry(t *testing.T, bigLast bool) *slowRegistry {
	t.Helper()
	b := make([]byte, 2<<20)
	rand.NewChaCha8([32]byte{7}).Read(b)
	big, small := tartest.Tar(tartest.File("big", string(b))), tartest.Tar(tartest.File("small", "s"))
	img := tartest.Image(big, small)
	if bigLast {
		img = tartest.Image(small, big)
	}
	layers, _ := img.Layers()
	blobs := map[string]bool{}
	for _, l := range layers {
		d, _ := l.Digest()
		blobs[d.String()] = true
	}
	s := &slowRegistry{release: make(chan struct{})}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		if i := strings.LastIndex(r.URL.Path, "/blobs/"); i >= 0 && r.Method == http.MethodGet && blobs[r.URL.Path[i+len("/blobs/"):]] {
			s.layers.Add(1)
			select {
			case <-s.release:
			case <-r.Context().Done():
				return
			}
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	s.ref = u.Host + "/slow/img:1"
	r, _ := name.ParseReference(s.ref)
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	s.requests.Store(0)
	return s
}

// runCLICtx is runCLI with a context: a test that would otherwise wait for a download
// that never ends stops when the test's deadline nears, and fails.
func runCLICtx(t *testing.T, ctx context.Context, args ...string) (code int, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = run(ctx, args, strings.NewReader(""), &o, &e)
	return code, e.String()
}

func deadline(t *testing.T) context.Context {
	d := time.Now().Add(60 * time.Second) // a hang guard, not a timing assertion
	if td, ok := t.Deadline(); ok && td.Add(-5*time.Second).Before(d) {
		d = td.Add(-5 * time.Second)
	}
	ctx, cancel := context.WithDeadline(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestChecksBeforeDownload gives a conversion each mistake that can be found before any
// layer is downloaded, against a registry whose layer downloads never finish: each run
// must exit 2 with a message naming the problem, without asking for a layer blob (most
// without a single request), and leave nothing behind.
func TestChecksBeforeDownload(t *testing.T) {
	reg := newSlowRegistry(t, true)
	tmp := t.TempDir()
	missing := filepath.Join(tmp, "missing")
	out := filepath.Join(tmp, "out.img")
	notDir := filepath.Join(tmp, "file")
	os.WriteFile(notDir, nil, 0o644)
	aDir := filepath.Join(tmp, "adir")
	os.Mkdir(aDir, 0o755)
	cases := []struct {
		name     string
		args     []string
		want     string
		registry bool // the check needs the manifest: requests are fine, layer blobs not
	}{
		{"add source missing", []string{"--add", missing + ":/x", reg.ref, out}, "add " + missing + ": no such file", false},
		{"add source below a file", []string{"--add", notDir + "/x:/x", reg.ref, out}, "add " + notDir + "/x: not a directory", false},
		{"config-out directory missing", []string{"--config-out", filepath.Join(missing, "c.json"), reg.ref, out}, "write config " + filepath.Join(missing, "c.json") + ": directory " + missing + ": no such file", false},
		{"config-out is a directory", []string{"--config-out", aDir, reg.ref, out}, "write config " + aDir + ": is a directory", false},
		{"tmpdir missing", []string{"--tmpdir", missing, reg.ref, out}, "temporary directory " + missing + ": directory " + missing + ": no such file", false},
		{"tmpdir is a file", []string{"--tmpdir", notDir, reg.ref, out}, "is not a directory", false},
		{"output directory missing", []string{reg.ref, filepath.Join(missing, "out.img")}, "directory " + missing + ": no such file", false},
		{"output directory missing, tar", []string{"--format", "tar", reg.ref, filepath.Join(missing, "out.tar")}, "directory " + missing + ": no such file", false},
		{"output directory missing, dir", []string{"--format", "dir", reg.ref, filepath.Join(missing, "rootfs")}, "directory " + missing + ": no such file", false},
		{"output is a directory", []string{reg.ref, aDir}, "write image " + aDir + ": is a directory", false},
		{"size below the last layer", []string{"--size", "512K", reg.ref, out}, "too small: the image needs more than 1048", true},
	}
	if os.Geteuid() != 0 {
		unreadable := filepath.Join(tmp, "secret")
		os.WriteFile(unreadable, []byte("x"), 0o000)
		roDir := filepath.Join(tmp, "ro")
		os.Mkdir(roDir, 0o555)
		cases = append(cases,
			struct {
				name     string
				args     []string
				want     string
				registry bool
			}{"add source unreadable", []string{"--add", unreadable + ":/x", reg.ref, out}, "is not readable", false},
			struct {
				name     string
				args     []string
				want     string
				registry bool
			}{"output directory read-only", []string{reg.ref, filepath.Join(roDir, "out.img")}, "is not writable", false},
		)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			reg.requests.Store(0)
			reg.layers.Store(0)
			code, errOut := runCLICtx(t, deadline(t), append([]string{"-q"}, tc.args...)...)
			if code != 2 || !strings.Contains(errOut, tc.want) {
				t.Errorf("exit %d, want 2 and %q: %s", code, tc.want, errOut)
			}
			if n := reg.layers.Load(); n != 0 {
				t.Errorf("%d layer blobs requested before the check failed", n)
			}
			if n := reg.requests.Load(); n != 0 && !tc.registry {
				t.Errorf("%d registry requests before a check that needs none", n)
			}
			if _, err := os.Stat(out); err == nil {
				t.Error("output left behind")
			}
			entries, _ := os.ReadDir(tmp)
			for _, e := range entries {
				if strings.Contains(e.Name(), "img2ext4") {
					t.Errorf("temporary %s left behind", e.Name())
				}
			}
		})
	}
}

// TestLaunchConfigAtomic: a conversion that fails late leaves no config, and a config
// that cannot be written leaves no image; together they appear.
func TestLaunchConfigAtomic(t *testing.T) {
	reg := newSlowRegistry(t, false)
	close(reg.release)
	tmp := t.TempDir()
	out, cfg := filepath.Join(tmp, "out.img"), filepath.Join(tmp, "launch.json")
	noneLeft := func(t *testing.T) {
		t.Helper()
		entries, _ := os.ReadDir(tmp)
		if len(entries) != 0 {
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			t.Errorf("left behind: %v", names)
		}
	}

	// The image does not fit 1M (its first layer is 2 MiB of noise), found only while
	// writing: no config appears.
	code, errOut := runCLICtx(t, deadline(t), "-q", "--size", "1M", "--config-out", cfg, reg.ref, out)
	if code != 1 || !strings.Contains(errOut, "1048576") {
		t.Errorf("too small: exit %d: %s", code, errOut)
	}
	noneLeft(t)

	// The config path becomes a directory while layers download: no image appears.
	blocked := newSlowRegistry(t, false)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for blocked.layers.Load() == 0 {
			time.Sleep(5 * time.Millisecond)
		}
		os.MkdirAll(filepath.Join(cfg, "sub"), 0o755)
		close(blocked.release)
	}()
	code, errOut = runCLICtx(t, deadline(t), "-q", "--config-out", cfg, blocked.ref, out)
	wg.Wait()
	if code != 1 || !strings.Contains(errOut, "write config "+cfg+": is a directory") {
		t.Errorf("config fails: exit %d: %s", code, errOut)
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("the image appeared without its config")
	}
	os.RemoveAll(cfg)
	noneLeft(t)

	for _, format := range []string{"ext4", "dir", "tar"} {
		o := filepath.Join(tmp, "ok-"+format)
		code, errOut = runCLICtx(t, deadline(t), "-q", "--format", format, "--config-out", cfg, reg.ref, o)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", format, code, errOut)
		}
		b, err := os.ReadFile(cfg)
		if err != nil || !bytes.Contains(b, []byte(`"platform": "linux/amd64"`)) {
			t.Errorf("%s: config %s, %v", format, b, err)
		}
		os.Remove(cfg)
	}
}
