package main

import (
	"bytes"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/img2ext4/img2ext4/internal/tartest"
)

// syncBuffer is a bytes.Buffer that the test may read while exec writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestSignalLeavesNothing interrupts a real conversion in the middle (its last layer's
// download never finishes) with SIGTERM and SIGINT: the process must exit with status 143
// or 130, say which signal stopped it, and leave neither the output nor any temporary
// file, and an existing output stays as it was.
func TestSignalLeavesNothing(t *testing.T) {
	bin := buildBinary(t)
	l1 := tartest.Tar(tartest.File("a", strings.Repeat("a", 1<<20)))
	l2 := tartest.Tar(tartest.File("b", "b"))
	img := tartest.Image(l1, l2)
	layers, _ := img.Layers()
	stalled, _ := layers[1].Digest()

	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+stalled.String()) {
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			<-r.Context().Done() // never send the body
			return
		}
		reg.ServeHTTP(w, r)
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	ref := u.Host + "/slow/img:1"
	r, _ := name.ParseReference(ref)
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}

	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		for _, format := range []string{"ext4", "dir", "tar"} {
			t.Run(sig.String()+"/"+format, func(t *testing.T) {
				work := t.TempDir()
				tmpdir := t.TempDir()
				out := filepath.Join(work, "out")
				existing := format != "dir"
				if existing {
					os.WriteFile(out, []byte("old"), 0o644)
				}
				var stderr syncBuffer
				cmd := exec.Command(bin, "--format", format, "--progress", "plain", ref, out)
				cmd.Env = append(os.Environ(), "TMPDIR="+tmpdir)
				cmd.Stderr = &stderr
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				// Wait until the first layer is applied, so the output is half written.
				deadline := time.Now().Add(20 * time.Second)
				for !strings.Contains(stderr.String(), "applied") && time.Now().Before(deadline) {
					time.Sleep(20 * time.Millisecond)
				}
				if !strings.Contains(stderr.String(), "applied") {
					cmd.Process.Kill()
					t.Fatalf("conversion never got going: %s", stderr.String())
				}
				cmd.Process.Signal(sig)
				done := make(chan error, 1)
				go func() { done <- cmd.Wait() }()
				select {
				case <-done:
					// The shell's convention: 128 + the signal's number.
					if got, want := cmd.ProcessState.ExitCode(), 128+int(sig); got != want {
						t.Errorf("exit status %d, want %d; stderr %s", got, want, stderr.String())
					}
					if msg := map[syscall.Signal]string{syscall.SIGINT: "img2ext4: interrupted (SIGINT)\n", syscall.SIGTERM: "img2ext4: terminated (SIGTERM)\n"}[sig]; !strings.HasSuffix(stderr.String(), msg) {
						t.Errorf("stderr does not end with %q: %s", msg, stderr.String())
					}
				case <-time.After(20 * time.Second):
					cmd.Process.Kill()
					t.Fatal("did not stop on the signal")
				}
				entries, _ := os.ReadDir(work)
				var names []string
				for _, e := range entries {
					names = append(names, e.Name())
				}
				if existing {
					if b, _ := os.ReadFile(out); string(b) != "old" || len(names) != 1 {
						t.Errorf("existing output changed or temp files left: %v %q", names, b)
					}
				} else if len(names) != 0 {
					t.Errorf("left behind: %v", names)
				}
				if left, _ := os.ReadDir(tmpdir); len(left) != 0 {
					t.Errorf("temporary blobs left in TMPDIR: %v", left)
				}
			})
		}
	}
}
