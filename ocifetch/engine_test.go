package ocifetch

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// TestEngineUnreachable: a "docker-daemon:" reference whose engine is not running fails with
// ErrEngineUnreachable, naming the endpoint and saying what to do, for a socket that does not
// exist, a socket nobody listens on any more, and a loopback port nobody listens on.
func TestEngineUnreachable(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "stale.sock")
	l, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close() // the socket file stays; connecting to it is refused
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := tl.Addr().String()
	tl.Close()

	for _, tc := range []struct{ name, host string }{
		{"missing socket", "unix://" + filepath.Join(dir, "missing.sock")},
		{"stale socket", "unix://" + stale},
		{"closed port", "tcp://" + closedPort},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Image(context.Background(), "docker-daemon:alpine:latest", WithEngineHost(tc.host))
			if !errors.Is(err, ErrEngineUnreachable) {
				t.Fatalf("err = %v, want ErrEngineUnreachable", err)
			}
			for _, want := range []string{tc.host, "start the engine", "DOCKER_HOST"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
		})
	}
}

// TestEngineHost: DOCKER_HOST is the default endpoint, WithEngineHost wins over it, and
// endpoints other than unix:// and tcp:// are refused.
func TestEngineHost(t *testing.T) {
	t.Setenv("DOCKER_HOST", "")
	if s, err := SettingsOf(); err != nil || s.EngineHost != DefaultEngineHost {
		t.Errorf("no DOCKER_HOST: %q, %v; want %q", s.EngineHost, err, DefaultEngineHost)
	}
	t.Setenv("DOCKER_HOST", "unix:///run/podman/podman.sock")
	if s, err := SettingsOf(); err != nil || s.EngineHost != "unix:///run/podman/podman.sock" {
		t.Errorf("DOCKER_HOST: %q, %v", s.EngineHost, err)
	}
	if s, err := SettingsOf(WithEngineHost("tcp://127.0.0.1:2375")); err != nil || s.EngineHost != "tcp://127.0.0.1:2375" {
		t.Errorf("WithEngineHost: %q, %v", s.EngineHost, err)
	}
	for _, bad := range []string{"/var/run/docker.sock", "unix://", "tcp://127.0.0.1", "ssh://user@host", "npipe:////./pipe/docker_engine", "tcp://127.0.0.1:2375/path"} {
		if _, err := SettingsOf(WithEngineHost(bad)); err == nil {
			t.Errorf("WithEngineHost(%q) accepted", bad)
		}
	}
}

// TestSpoolTar reads archives as a stream, as an engine export arrives, and checks that
// every file the spooler serves equals what indexTar serves from the same archive on
// disk: archives written by go-containerregistry's tarball package, in the shape of
// Docker 25's save, and by GNU tar with a hard link and symbolic links (as "docker save"
// links repeated layers), plain and gzip-compressed. The spool leaves nothing in the
// temp dir, and a stream over the size cap fails with ErrLimit.
func TestSpoolTar(t *testing.T) {
	dir := t.TempDir()
	ggcr := filepath.Join(dir, "ggcr.tar")
	tag, _ := name.NewTag("example.com/a:v1")
	if err := tarball.WriteToFile(ggcr, tag, randomImage(t, 3000, 2, nil)); err != nil {
		t.Fatal(err)
	}
	newSave := filepath.Join(dir, "new.tar")
	writeNewDockerSave(t, newSave)
	archives := []string{ggcr, newSave}
	if gnu, err := exec.LookPath("tar"); err == nil {
		src := filepath.Join(dir, "src")
		for n, body := range map[string]string{"a/layer.tar": strings.Repeat("layer", 5000), "c.json": "{}"} {
			os.MkdirAll(filepath.Join(src, filepath.Dir(n)), 0o755)
			os.WriteFile(filepath.Join(src, n), []byte(body), 0o644)
		}
		os.Mkdir(filepath.Join(src, "b"), 0o755)
		os.Link(filepath.Join(src, "a/layer.tar"), filepath.Join(src, "hard.tar"))
		os.Symlink("../a/layer.tar", filepath.Join(src, "b/layer.tar"))
		os.Symlink("b/layer.tar", filepath.Join(src, "chain.tar"))
		for _, args := range [][]string{{"-cf", filepath.Join(dir, "gnu.tar")}, {"-czf", filepath.Join(dir, "gnu.tar.gz")}} {
			if b, err := exec.Command(gnu, append(args, "-C", src, "a", "b", "c.json", "hard.tar", "chain.tar")...).CombinedOutput(); err != nil {
				t.Fatalf("tar %v: %v\n%s", args, err, b)
			}
		}
		archives = append(archives, filepath.Join(dir, "gnu.tar"), filepath.Join(dir, "gnu.tar.gz"))
	}
	for _, file := range archives {
		t.Run(filepath.Base(file), func(t *testing.T) {
			tmp := t.TempDir()
			want, err := indexTar(file, tmp)
			if err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(file)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got, err := spoolTar(ctxBG, struct{ io.Reader }{f}, "stream", tmp) // a reader that cannot seek
			if err != nil {
				t.Fatal(err)
			}
			if left := dirEntries(t, tmp); len(left) != 0 {
				t.Errorf("spool left in the temp dir: %v", left)
			}
			if len(got.files) != len(want.files) || len(got.files) == 0 {
				t.Errorf("spooled %d files, the index has %d", len(got.files), len(want.files))
			}
			for n := range want.files {
				if read(t, got, n) != read(t, want, n) {
					t.Errorf("%s: spooled content differs from the archive's", n)
				}
			}
		})
	}
	t.Run("limit", func(t *testing.T) {
		defer func(old int64) { maxArchiveSize = old }(maxArchiveSize)
		maxArchiveSize = 1000
		f, err := os.Open(ggcr)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := spoolTar(ctxBG, f, "stream", t.TempDir()); !errors.Is(err, ErrLimit) {
			t.Fatalf("err = %v, want ErrLimit", err)
		}
	})
}

func read(t *testing.T, fsys *tarFS, name string) string {
	t.Helper()
	rc, err := fsys.open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestRelease: Release closes the decompressed copy of a compressed archive (the same
// kind of unlinked file as an engine export's spool), after which the image's blobs
// cannot be read; a second Release and one of an image without such a file do nothing.
func TestRelease(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "save.tar")
	tag, _ := name.NewTag("example.com/a:v1")
	if err := tarball.WriteToFile(plain, tag, randomImage(t, 300, 1, nil)); err != nil {
		t.Fatal(err)
	}
	gz := plain + ".gz"
	if b, err := exec.Command("gzip", "-k", plain).CombinedOutput(); err != nil {
		t.Skipf("gzip: %v %s", err, b)
	}
	for _, tc := range []struct {
		ref      string
		readable bool // after Release
	}{{"docker-archive:" + gz, false}, {"docker-archive:" + plain, true}} {
		t.Run(filepath.Base(tc.ref), func(t *testing.T) {
			img, err := Image(ctxBG, tc.ref)
			if err != nil {
				t.Fatal(err)
			}
			layers, _ := img.Layers()
			readLayers(t, layers) // readable before
			for range 2 {
				if err := Release(img); err != nil {
					t.Fatal(err)
				}
			}
			rc, err := layers[0].Compressed()
			if err == nil {
				_, err = io.Copy(io.Discard, rc)
				rc.Close()
			}
			if (err == nil) != tc.readable {
				t.Errorf("reading a layer after Release: err = %v, want readable %v", err, tc.readable)
			}
		})
	}
}
