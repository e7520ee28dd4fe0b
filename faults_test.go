package img2ext4_test

import (
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/img2ext4/img2ext4"
	"github.com/img2ext4/img2ext4/internal/faultproxy"
	"github.com/img2ext4/img2ext4/internal/tartest"
	"github.com/img2ext4/img2ext4/internal/treesnap"
	"github.com/img2ext4/img2ext4/ocifetch"
)

// TestConvertThroughFaults converts an image through a proxy that injects
// the faults registries show, alone and all together, and checks that each
// run gives the same e2fsck-clean ext4 image, byte for byte, as a run
// without faults, and the same tree for --format dir; answers that cannot
// succeed fail after one request.
func TestConvertThroughFaults(t *testing.T) {
	needTool(t, "e2fsck") // before any work
	ctx := context.Background()
	img := tartest.Image(richLayers()...)
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	upstream := strings.TrimPrefix(srv.URL, "http://")
	r, err := name.ParseReference(upstream + "/test/img:1")
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
	var blobs []string
	for _, l := range ls {
		d, _ := l.Digest()
		blobs = append(blobs, "/blobs/"+d.String())
	}
	cfg, _ := img.ConfigName()
	big := blobs[0] // the layer with a 3 MiB random file

	tmp := t.TempDir()
	clean := filepath.Join(tmp, "clean.img")
	if _, err := img2ext4.Convert(ctx, r.String(), clean); err != nil {
		t.Fatal(err)
	}
	fsck(t, clean)
	cleanDir := filepath.Join(tmp, "clean-dir")
	if _, err := img2ext4.Convert(ctx, r.String(), cleanDir, img2ext4.WithFormat(img2ext4.FormatDir)); err != nil {
		t.Fatal(err)
	}
	cleanTree, err := treesnap.Dir(cleanDir, treesnap.Options{NoXattrs: true})
	if err != nil {
		t.Fatal(err)
	}

	all := []faultproxy.Fault{
		{Kind: faultproxy.Status, Path: "/token", Code: 503},
		{Kind: faultproxy.Status, Path: "/manifests/", Code: 503},
		{Kind: faultproxy.Status, Path: "/blobs/" + cfg.String(), Code: 502},
		{Kind: faultproxy.Status, Path: big, Code: 500, Times: 2},
		{Kind: faultproxy.Status, Path: big, Code: 429, RetryAfter: "1"},
		{Kind: faultproxy.ShortBody, Path: big},
		{Kind: faultproxy.ResetBody, Path: big},
		{Kind: faultproxy.Reset, Path: blobs[1]},
	}
	for _, tc := range []struct {
		name   string
		auth   bool
		format img2ext4.Format
		faults []faultproxy.Fault
	}{
		{"blob 500 twice", false, img2ext4.FormatExt4, []faultproxy.Fault{{Kind: faultproxy.Status, Path: big, Code: 500, Times: 2}}},
		{"manifest 503", false, img2ext4.FormatExt4, []faultproxy.Fault{{Kind: faultproxy.Status, Path: "/manifests/", Code: 503}}},
		{"429 Retry-After 1", false, img2ext4.FormatExt4, []faultproxy.Fault{{Kind: faultproxy.Status, Path: big, Code: 429, RetryAfter: "1"}}},
		{"short body", false, img2ext4.FormatExt4, []faultproxy.Fault{{Kind: faultproxy.ShortBody, Path: big}}},
		{"reset", false, img2ext4.FormatExt4, []faultproxy.Fault{{Kind: faultproxy.ResetBody, Path: big}}},
		{"all combined", true, img2ext4.FormatExt4, all},
		{"all combined, dir", true, img2ext4.FormatDir, all},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := faultproxy.New(t, upstream, tc.auth)
			p.Inject(tc.faults...)
			out := filepath.Join(t.TempDir(), "out")
			if _, err := img2ext4.Convert(ctx, p.Host+"/test/img:1", out, img2ext4.WithFormat(tc.format)); err != nil {
				t.Fatalf("convert through faults: %v", err)
			}
			if n := p.Pending(); n != 0 {
				t.Errorf("%d faults never injected", n)
			}
			if tc.format == img2ext4.FormatDir {
				got, err := treesnap.Dir(out, treesnap.Options{NoXattrs: true})
				if err != nil {
					t.Fatal(err)
				}
				if d := treesnap.Diff(treesnap.Lines(cleanTree), treesnap.Lines(got)); d != "" {
					t.Errorf("tree differs from a run without faults:\n%s", d)
				}
				return
			}
			fsck(t, out)
			if sha(t, out) != sha(t, clean) {
				t.Error("ext4 image differs from a run without faults")
			}
		})
	}

	t.Run("not retried", func(t *testing.T) {
		p := faultproxy.New(t, upstream, false)
		p.Inject(faultproxy.Fault{Kind: faultproxy.Status, Path: big, Code: 404})
		out := filepath.Join(t.TempDir(), "out")
		_, err := img2ext4.Convert(ctx, p.Host+"/test/img:1", out)
		if !errors.Is(err, ocifetch.ErrNotFound) || !strings.Contains(err.Error(), "not retried: HTTP 404 Not Found is final") {
			t.Fatalf("err = %v, want a 404 not retried", err)
		}
		if n := p.Count(http.MethodGet, big); n != 1 {
			t.Errorf("%d GETs of the missing blob, want 1", n)
		}
	})
}
