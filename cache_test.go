package img2ext4_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/img2ext4/img2ext4"
	"github.com/img2ext4/img2ext4/artifact"
	"github.com/img2ext4/img2ext4/internal/registrytest"
	"github.com/img2ext4/img2ext4/internal/tartest"
	"github.com/img2ext4/img2ext4/internal/trusttest"
)

// TestCache converts with --cache-from and --cache-to against each registry: the first
// conversion misses and pushes; the second pulls the pushed artifact instead of
// converting (no layer blob is fetched from the source, nothing is applied) and writes
// the same bytes, with the same verity root hash; other options give another key, so
// a miss.
func TestCache(t *testing.T) {
	for _, start := range []func(testing.TB) *registrytest.Registry{registrytest.GGCR, registrytest.Distribution} {
		reg := start(t)
		t.Run(reg.Name, func(t *testing.T) {
			ctx := context.Background()
			img := tartest.Image(helloLayers()...)
			src, err := name.ParseReference(reg.Host + "/app:1")
			if err != nil {
				t.Fatal(err)
			}
			if err := remote.Write(src, img); err != nil {
				t.Fatal(err)
			}
			m, _ := img.Manifest()
			cache := reg.Host + "/app-ext4"
			dir := t.TempDir()
			opts := []img2ext4.Option{img2ext4.WithVerity(img2ext4.VerityOptions{}), img2ext4.WithCacheFrom(cache), img2ext4.WithCacheTo(cache)}

			first := filepath.Join(dir, "first.img")
			res, err := img2ext4.Convert(ctx, src.String(), first, opts...)
			if err != nil {
				t.Fatal(err)
			}
			c := res.Cache
			if c == nil || c.Hit != "" || len(c.Missed) != 1 || c.Pushed == "" || c.Uploaded == 0 || res.Layers != len(m.Layers) {
				t.Fatalf("first conversion: layers %d, cache %+v; want a miss, a conversion and a push", res.Layers, c)
			}

			reg.Reset()
			second := filepath.Join(dir, "second.img")
			res2, err := img2ext4.Convert(ctx, src.String(), second, opts...)
			if err != nil {
				t.Fatal(err)
			}
			c2 := res2.Cache
			if c2 == nil || c2.Hit != c.Pushed || c2.Key != c.Key || res2.Layers != res.Layers {
				t.Fatalf("second conversion: layers %d, cache %+v; want a hit on %s and the %d layers converting reported", res2.Layers, c2, c.Pushed, res.Layers)
			}
			// The source's manifest and config are read, no layer: nothing is converted.
			// The push after the hit finds every blob in place.
			if got := reg.Count(registrytest.BlobGet); got != 1+c.Blobs+1 {
				t.Errorf("%d blob downloads, want the source's config and the artifact's index and %d chunks", got, c.Blobs)
			}
			if c2.Uploaded != 0 || c2.Pushed != c.Pushed {
				t.Errorf("the push after a hit uploaded %d blobs to %s, want none to %s", c2.Uploaded, c2.Pushed, c.Pushed)
			}
			a, _ := os.ReadFile(first)
			b, _ := os.ReadFile(second)
			if !bytes.Equal(a, b) {
				t.Fatal("the image pulled from the cache differs from the converted one")
			}
			if res.Verity == nil || res2.Verity == nil {
				t.Fatalf("verity after the hit %+v, after converting %+v", res2.Verity, res.Verity)
			}
			v1, v2 := *res.Verity, *res2.Verity
			if v2.HashFile != second || !strings.Contains(v2.Open, second) || v1.Open != strings.ReplaceAll(v2.Open, second, first) {
				t.Errorf("verity open line after the hit %q, after converting %q", v2.Open, v1.Open)
			}
			v1.HashFile, v1.Open, v2.HashFile, v2.Open = "", "", "", ""
			if v1 != v2 {
				t.Errorf("verity after the hit %+v, after converting %+v", v2, v1)
			}
			if res2.Digest != res.Digest || res2.Platform.String() != res.Platform.String() || res2.Filesystem == nil || *res2.Filesystem != *res.Filesystem {
				t.Errorf("hit result %+v %+v, converted %+v %+v", res2.Digest, res2.Filesystem, res.Digest, res.Filesystem)
			}

			// Another label is another key: a miss, converted.
			res3, err := img2ext4.Convert(ctx, src.String(), filepath.Join(dir, "third.img"), append(opts, img2ext4.WithExt4(img2ext4.Ext4Options{Label: "other", Align: img2ext4.DefaultAlign}))...)
			if err != nil {
				t.Fatal(err)
			}
			if res3.Cache.Hit != "" || res3.Cache.Key == c.Key || res3.Layers == 0 {
				t.Errorf("another label: cache %+v, layers %d; want a miss", res3.Cache, res3.Layers)
			}
			found, err := artifact.Find(ctx, cache, res.Digest, nil)
			if err != nil || len(found) != 2 {
				t.Errorf("the source has %d referrers (%v), want the two pushed", len(found), err)
			}
		})
	}
}

// TestCacheReport converts an image whose layer carries attributes ext4 cannot hold, with
// a CA certificate baked in, through --cache-to, then hits the cache: the hit's Result
// has the layers, warnings and CA report the conversion had, as the artifact records them.
func TestCacheReport(t *testing.T) {
	ctx := context.Background()
	m := tartest.Mtime(time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC))
	odd := tartest.Tar(tartest.Dir("d", m), tartest.File("d/odd", "o\n", m, tartest.Xattr("btrfs.compression", "zstd"), tartest.Xattr("user.", "bare")))
	src := pushed(t, tartest.Image(append(helloLayers(), odd)...))
	reg := registrytest.GGCR(t)
	cache := reg.Host + "/app-ext4"
	p := trusttest.NewPKI(t)
	opts := []img2ext4.Option{img2ext4.WithCACerts(p.Corp.Cert), img2ext4.WithCacheFrom(cache), img2ext4.WithCacheTo(cache)}
	dir := t.TempDir()
	res, err := img2ext4.Convert(ctx, src, filepath.Join(dir, "first.img"), opts...)
	if err != nil {
		t.Fatal(err)
	}
	if res.Cache.Hit != "" || len(res.Warnings) == 0 || res.CACerts == nil || len(res.CACerts.Changes) == 0 {
		t.Fatalf("first conversion: cache %+v, warnings %v, CA report %+v; want a miss with warnings and changes", res.Cache, res.Warnings, res.CACerts)
	}
	res2, err := img2ext4.Convert(ctx, src, filepath.Join(dir, "second.img"), opts...)
	if err != nil {
		t.Fatal(err)
	}
	if res2.Cache.Hit == "" {
		t.Fatalf("second conversion missed: %+v", res2.Cache)
	}
	if res2.Layers != res.Layers || !reflect.DeepEqual(res2.Warnings, res.Warnings) || res2.WarningsOmitted != res.WarningsOmitted || !reflect.DeepEqual(res2.CACerts, res.CACerts) {
		t.Errorf("hit reported layers %d, warnings %v (+%d), CA %+v; converting reported %d, %v (+%d), %+v",
			res2.Layers, res2.Warnings, res2.WarningsOmitted, res2.CACerts, res.Layers, res.Warnings, res.WarningsOmitted, res.CACerts)
	}
}
