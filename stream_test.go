package img2ext4_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/img2ext4/img2ext4"
	"github.com/img2ext4/img2ext4/internal/faultproxy"
	"github.com/img2ext4/img2ext4/internal/tartest"
	"github.com/img2ext4/img2ext4/ocifetch"
	"github.com/img2ext4/img2ext4/progress"
)

// heldTimeout bounds a conversion whose download a test holds in the middle: when
// decoding waits for the end of the download, the hold is never released and the
// conversion ends here, failing the test with a message that says so. It bounds a hang,
// not a speed: a working conversion releases the hold as soon as the first bytes are
// applied.
const heldTimeout = time.Minute

// streamSetup is the rich image in a registry, its big layer's blob path, and the
// e2fsck-clean ext4 image of a conversion without faults.
type streamSetup struct {
	upstream, big, clean string
}

func newStreamSetup(t *testing.T) *streamSetup {
	t.Helper()
	img := tartest.Image(richLayers()...)
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	s := &streamSetup{upstream: strings.TrimPrefix(srv.URL, "http://")}
	r, err := name.ParseReference(s.upstream + "/test/img:1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	d, err := ls[0].Digest() // the layer with a 3 MiB random file
	if err != nil {
		t.Fatal(err)
	}
	s.big = "/blobs/" + d.String()
	s.clean = filepath.Join(t.TempDir(), "clean.img")
	if _, err := img2ext4.Convert(context.Background(), r.String(), s.clean); err != nil {
		t.Fatal(err)
	}
	fsck(t, s.clean)
	return s
}

// appliedGate returns a progress function that closes the returned channel once bytes
// of layer 0 have been applied, and a function telling whether that happened.
func appliedGate() (progress.Func, <-chan struct{}, func() bool) {
	gate := make(chan struct{})
	var once sync.Once
	fn := func(ev progress.Event) {
		if ev.Phase == progress.PhaseApply && ev.Layer == 0 && ev.Done > 0 {
			once.Do(func() { close(gate) })
		}
	}
	applied := func() bool {
		select {
		case <-gate:
			return true
		default:
			return false
		}
	}
	return fn, gate, applied
}

// TestConvertDecodesWhileDownloading holds the big layer's download after the first half
// of its blob until bytes of that layer have been applied to the image, then lets the
// rest through: the conversion only finishes when decoding starts before the download
// ends, and gives the same image as a conversion without the hold.
func TestConvertDecodesWhileDownloading(t *testing.T) {
	needTool(t, "e2fsck") // before any work
	s := newStreamSetup(t)
	fn, gate, applied := appliedGate()
	p := faultproxy.New(t, s.upstream, false)
	p.Inject(faultproxy.Fault{Kind: faultproxy.Hold, Path: s.big, Gate: gate})
	ctx, cancel := context.WithTimeout(context.Background(), heldTimeout)
	defer cancel()
	out := filepath.Join(t.TempDir(), "out.img")
	_, err := img2ext4.Convert(ctx, p.Host+"/test/img:1", out, img2ext4.WithProgress(fn))
	if !applied() {
		t.Fatalf("no byte of the layer was applied while the second half of its blob was held back (conversion: %v): decoding waits for the end of the download", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if n := p.Pending(); n != 0 {
		t.Errorf("%d faults never injected", n)
	}
	fsck(t, out)
	if sha(t, out) != sha(t, s.clean) {
		t.Error("ext4 image differs from a conversion without the hold")
	}
}

// TestConvertCutAfterDecoding cuts the big layer's download after its first half once
// bytes of that layer have been applied: the download resumes from the bytes received,
// the decoder goes on without seeing a byte twice or missing one, and the image is the
// same, byte for byte, as a conversion without faults.
func TestConvertCutAfterDecoding(t *testing.T) {
	needTool(t, "e2fsck") // before any work
	s := newStreamSetup(t)
	for _, kind := range []faultproxy.Kind{faultproxy.ShortBody, faultproxy.ResetBody} {
		t.Run(kind.String(), func(t *testing.T) {
			fn, gate, applied := appliedGate()
			p := faultproxy.New(t, s.upstream, false)
			p.Inject(faultproxy.Fault{Kind: kind, Path: s.big, Gate: gate})
			ctx, cancel := context.WithTimeout(context.Background(), heldTimeout)
			defer cancel()
			out := filepath.Join(t.TempDir(), "out.img")
			_, err := img2ext4.Convert(ctx, p.Host+"/test/img:1", out, img2ext4.WithProgress(fn))
			if !applied() {
				t.Fatalf("no byte of the layer was applied before the cut (conversion: %v): decoding waits for the end of the download", err)
			}
			if err != nil {
				t.Fatalf("convert through a cut after decoding began: %v", err)
			}
			resumed := false
			for _, h := range p.Hits() {
				if strings.HasSuffix(h.Path, s.big) && strings.HasPrefix(h.Range, "bytes=") && !strings.HasPrefix(h.Range, "bytes=0-") {
					resumed = true
				}
			}
			if !resumed {
				t.Errorf("the cut download was not resumed with a Range request: %+v", p.Hits())
			}
			fsck(t, out)
			if sha(t, out) != sha(t, s.clean) {
				t.Error("ext4 image differs from a conversion without faults")
			}
		})
	}
}

// TestConvertCorruptBlobEnd serves a layer blob whose last byte is flipped: the conversion
// fails, and leaves neither the output nor a temporary file, neither beside the output nor
// in the temporary directory. An uncompressed layer whose tar ends before the flipped byte
// (in the zero padding GNU tar adds) decodes and applies fine, so only the blob's digest
// catches it; in a gzip layer the flip lands in the gzip trailer, which the decoder or the
// digest catch, whichever reads it first.
func TestConvertCorruptBlobEnd(t *testing.T) {
	random := make([]byte, 2<<20)
	for i := range random {
		random[i] = byte(i*7 + i>>11)
	}
	tarball := tartest.Tar(tartest.Dir("etc"), tartest.File("etc/data", string(random)), tartest.File("etc/last", "last"))
	padded := append(bytes.Clone(tarball), make([]byte, 10240)...) // GNU tar's record padding
	for _, tc := range []struct {
		name   string
		layer  v1.Layer
		digest bool // the error must be the digest mismatch
	}{
		{"uncompressed, flip in the padding", static.NewLayer(padded, types.OCIUncompressedLayer), true},
		{"gzip, flip in the trailer", tartest.Layer(tarball), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img, err := mutate.AppendLayers(tartest.Image(), tc.layer)
			if err != nil {
				t.Fatal(err)
			}
			d, err := tc.layer.Digest()
			if err != nil {
				t.Fatal(err)
			}
			bad := "/blobs/" + d.String()
			reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, bad) {
					reg.ServeHTTP(w, r)
					return
				}
				rec := httptest.NewRecorder()
				reg.ServeHTTP(rec, r)
				b := rec.Body.Bytes()
				b[len(b)-1] ^= 0x20
				w.Header().Set("Content-Length", fmt.Sprint(len(b)))
				w.WriteHeader(rec.Code)
				w.Write(b)
			}))
			t.Cleanup(srv.Close)
			ref := strings.TrimPrefix(srv.URL, "http://") + "/test/bad:1"
			r, err := name.ParseReference(ref)
			if err != nil {
				t.Fatal(err)
			}
			if err := remote.Write(r, img); err != nil {
				t.Fatal(err)
			}
			dir, tmp := t.TempDir(), t.TempDir()
			out := filepath.Join(dir, "out.img")
			_, err = img2ext4.Convert(context.Background(), ref, out, img2ext4.WithTempDir(tmp))
			if err == nil {
				t.Fatal("a corrupt blob converted")
			}
			if tc.digest && !errors.Is(err, ocifetch.ErrDigestMismatch) {
				t.Fatalf("err = %v, want a digest mismatch", err)
			}
			if !strings.Contains(err.Error(), d.String()) {
				t.Errorf("err = %v, does not name the blob %s", err, d)
			}
			for _, dir := range []string{dir, tmp} {
				if left, _ := os.ReadDir(dir); len(left) != 0 {
					t.Errorf("%s holds %v after the failure", dir, left)
				}
			}
		})
	}
}
