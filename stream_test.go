package img2ext4_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/img2ext4/img2ext4"
	"github.com/img2ext4/img2ext4/internal/faultproxy"
	"github.com/img2ext4/img2ext4/internal/registrytest"
	"github.com/img2ext4/img2ext4/internal/tartest"
	"github.com/img2ext4/img2ext4/ocifetch"
	"github.com/img2ext4/img2ext4/progress"
)

// heldTimeout bounds a conversion whose download a test holds in the middle: when
// decoding waits for the end of the download, the hold is never released and the
// conversion ends here, failing the test with a message that says so. It bounds a hang,
// not a speed: a working conversion releases the hold as soon as the first bytes are
// applied (generous, for -race on a loaded machine).
const heldTimeout = 3 * time.Minute

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

// TestConvertWhileDownloading holds the download of the rich image's big layer (a 3 MiB
// random file) after the first half of its blob until bytes of that layer have been
// applied to the image, then lets the rest through (hold), or cuts it there (short-body,
// reset-body), after which the download resumes from the bytes received. The conversion
// only finishes when decoding starts before the download ends, and must give the same
// image, byte for byte, as a conversion without faults: the decoder saw no byte twice
// and missed none.
func TestConvertWhileDownloading(t *testing.T) {
	needTool(t, "e2fsck") // before any work
	ctx := context.Background()
	img := tartest.Image(richLayers()...)
	reg := registrytest.GGCR(t)
	ref := reg.Push(t, "test/img:1", img)
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	d, err := ls[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	big := "/blobs/" + d.String()
	clean := filepath.Join(t.TempDir(), "clean.img")
	if _, err := img2ext4.Convert(ctx, ref, clean); err != nil {
		t.Fatal(err)
	}
	fsck(t, clean)

	for _, kind := range []faultproxy.Kind{faultproxy.Hold, faultproxy.ShortBody, faultproxy.ResetBody} {
		t.Run(kind.String(), func(t *testing.T) {
			fn, gate, applied := appliedGate()
			p := faultproxy.New(t, reg.Host, false)
			p.Inject(faultproxy.Fault{Kind: kind, Path: big, Gate: gate})
			ctx, cancel := context.WithTimeout(ctx, heldTimeout)
			defer cancel()
			out := filepath.Join(t.TempDir(), "out.img")
			_, err := img2ext4.Convert(ctx, p.Host+"/test/img:1", out, img2ext4.WithProgress(fn))
			if !applied() {
				t.Fatalf("no byte of the layer was applied while the second half of its blob was held back (conversion: %v): decoding waits for the end of the download", err)
			}
			if err != nil {
				t.Fatalf("convert: %v", err)
			}
			if n := p.Pending(); n != 0 {
				t.Errorf("%d faults never injected", n)
			}
			if kind != faultproxy.Hold {
				resumed := false
				for _, h := range p.Hits() {
					if strings.HasSuffix(h.Path, big) && strings.HasPrefix(h.Range, "bytes=") && !strings.HasPrefix(h.Range, "bytes=0-") {
						resumed = true
					}
				}
				if !resumed {
					t.Errorf("the cut download was not resumed with a Range request: %+v", p.Hits())
				}
			}
			fsck(t, out)
			if sha(t, out) != sha(t, clean) {
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
	data := make([]byte, 2<<20)
	for i := range data {
		data[i] = byte(i*7 + i>>11)
	}
	tarball := tartest.Tar(tartest.Dir("etc"), tartest.File("etc/data", string(data)), tartest.File("etc/last", "last"))
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
			reg := registrytest.GGCR(t)
			ref := reg.Push(t, "test/bad:1", img)
			blob := reg.BlobPath(d.Hex)
			b, err := os.ReadFile(blob)
			if err != nil {
				t.Fatal(err)
			}
			b[len(b)-1] ^= 0x20
			if err := os.WriteFile(blob, b, 0o644); err != nil {
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
