package img2ext4_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/img2ext4/img2ext4"
	"github.com/img2ext4/img2ext4/internal/tartest"
	"github.com/img2ext4/img2ext4/internal/treesnap"
	"github.com/img2ext4/img2ext4/layerapply"
	"github.com/img2ext4/img2ext4/progress"
)

// pushed starts a registry on loopback, pushes img as test/img:1 and returns its reference.
func pushed(t *testing.T, img v1.Image) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	ref := u.Host + "/test/img:1"
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	return ref
}

var helloWant = []string{
	"bin/", "bin/hello -> ../usr/bin/hello",
	"etc/", "etc/motd/", "etc/motd/README = a directory now\n",
	"etc/os-release = NAME=\"hello\"\nID=hello\nVERSION_ID=1\n",
	"etc/passwd = root:x:0:0:root:/root:/bin/sh\n",
	"tmp/", "usr/", "usr/bin/",
	"usr/bin/hello = #!/bin/sh\necho hello again\n",
	"usr/bin/hi = #!/bin/sh\necho hello from img2ext4\n",
	"var/", "var/cache/", "var/cache/fresh = new\n",
}

func TestConvertFromRegistry(t *testing.T) {
	ref := pushed(t, tartest.Image(helloLayers()...))
	ctx := context.Background()

	var phases []progress.Phase
	out := filepath.Join(t.TempDir(), "rootfs")
	res, err := img2ext4.Convert(ctx, ref, out, img2ext4.WithFormat(img2ext4.FormatDir), img2ext4.WithProgress(func(ev progress.Event) {
		if len(phases) == 0 || phases[len(phases)-1] != ev.Phase {
			phases = append(phases, ev.Phase)
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	if res.Layers != 3 || res.Platform.OS != "linux" {
		t.Errorf("result = %+v", res)
	}
	es, err := treesnap.Dir(out, treesnap.Options{NoXattrs: true})
	if err != nil {
		t.Fatal(err)
	}
	if d := treesnap.Diff(helloWant, treesnap.ShortLines(es)); d != "" {
		t.Errorf("dir output differs:\n%s", d)
	}
	st, _ := os.Stat(out)
	if st.Mode().Perm() != 0o755 {
		t.Errorf("root mode %v, want 0755", st.Mode().Perm())
	}
	for _, p := range []progress.Phase{progress.PhaseResolve, progress.PhaseApply, progress.PhaseFinalize, progress.PhaseDone} {
		found := false
		for _, q := range phases {
			found = found || q == p
		}
		if !found {
			t.Errorf("no %s progress event (got %v)", p, phases)
		}
	}

	// The tar output, applied as a one-layer image, gives the same tree with every
	// attribute; and converting twice gives the same bytes.
	tarOut := filepath.Join(t.TempDir(), "rootfs.tar")
	if _, err := img2ext4.Convert(ctx, ref, tarOut, img2ext4.WithFormat(img2ext4.FormatTar)); err != nil {
		t.Fatal(err)
	}
	var again bytes.Buffer
	if _, err := img2ext4.ConvertTar(ctx, ref, &again); err != nil {
		t.Fatal(err)
	}
	first, _ := os.ReadFile(tarOut)
	if !bytes.Equal(first, again.Bytes()) {
		t.Error("two tar conversions differ")
	}
	flat := filepath.Join(t.TempDir(), "flat")
	d, _ := layerapply.NewDir(flat)
	if err := layerapply.Apply(ctx, d, tartest.Image(first)); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	a, _ := treesnap.Dir(out, treesnap.Options{})
	b, _ := treesnap.Dir(flat, treesnap.Options{})
	if d := treesnap.Diff(treesnap.Lines(a), treesnap.Lines(b)); d != "" {
		t.Errorf("tar output differs from dir output:\n%s", d)
	}
}

func TestConvertLeavesNothingOnError(t *testing.T) {
	bad := tartest.Image(tartest.Tar(tartest.File("ok", "1")), tartest.Tar(tartest.File("../escape", "x")))
	ref := pushed(t, bad)
	for _, f := range []img2ext4.Format{img2ext4.FormatExt4, img2ext4.FormatDir, img2ext4.FormatTar} {
		t.Run(string(f), func(t *testing.T) {
			parent := t.TempDir()
			out := filepath.Join(parent, "out")
			_, err := img2ext4.Convert(context.Background(), ref, out, img2ext4.WithFormat(f))
			if !errors.Is(err, layerapply.ErrUnsafePath) {
				t.Fatalf("err = %v, want ErrUnsafePath", err)
			}
			if !strings.Contains(err.Error(), "../escape") || !strings.Contains(err.Error(), "sha256:") {
				t.Errorf("error %q does not name the entry and layer", err)
			}
			left, _ := os.ReadDir(parent)
			if len(left) != 0 {
				t.Errorf("left behind: %v", left)
			}
		})
	}
	t.Run("existing file untouched", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "out.tar")
		os.WriteFile(out, []byte("precious"), 0o600)
		if _, err := img2ext4.Convert(context.Background(), ref, out, img2ext4.WithFormat(img2ext4.FormatTar)); err == nil {
			t.Fatal("no error")
		}
		if b, _ := os.ReadFile(out); string(b) != "precious" {
			t.Errorf("existing output changed to %q", b)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		parent := t.TempDir()
		if _, err := img2ext4.Convert(ctx, pushed(t, tartest.Image(helloLayers()...)), filepath.Join(parent, "o")); err == nil {
			t.Fatal("no error")
		}
		if left, _ := os.ReadDir(parent); len(left) != 0 {
			t.Errorf("left behind: %v", left)
		}
	})
}

func TestConvertRefusesNonEmptyDir(t *testing.T) {
	out := t.TempDir()
	os.WriteFile(filepath.Join(out, "x"), nil, 0o644)
	_, err := img2ext4.Convert(context.Background(), "oci:testdata/hello-oci", out, img2ext4.WithFormat(img2ext4.FormatDir))
	if err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("err = %v", err)
	}
}

func TestConvertOCILayout(t *testing.T) {
	out := filepath.Join(t.TempDir(), "r")
	if _, err := img2ext4.Convert(context.Background(), "oci:testdata/hello-oci:latest", out, img2ext4.WithFormat(img2ext4.FormatDir)); err != nil {
		t.Fatal(err)
	}
	es, _ := treesnap.Dir(out, treesnap.Options{NoXattrs: true})
	if d := treesnap.Diff(helloWant, treesnap.ShortLines(es)); d != "" {
		t.Errorf("differs:\n%s", d)
	}
}

// TestFormatError: an ext4 image or a directory asked into a FIFO is refused before any
// download with a *CheckError; for ext4 its Err is a *FormatError saying the FIFO takes
// FormatTar only, in the library's terms (no CLI flag).
func TestFormatError(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// A reference that cannot resolve: the refusal must come before it is tried.
	_, err := img2ext4.Convert(context.Background(), "oci:"+filepath.Join(dir, "missing"), fifo)
	var fe *img2ext4.FormatError
	if !errors.As(err, new(*img2ext4.CheckError)) || !errors.As(err, &fe) {
		t.Fatalf("err = %v, want a *CheckError holding a *FormatError", err)
	}
	if *fe != (img2ext4.FormatError{Output: "character device or FIFO", Format: img2ext4.FormatExt4, Want: img2ext4.FormatTar}) {
		t.Errorf("FormatError = %+v", *fe)
	}
	if want := "write image " + fifo + ": is a character device or FIFO, which takes the tar format only, not ext4"; err.Error() != want {
		t.Errorf("err = %q, want %q", err, want)
	}
}
