package img2ext4_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/img2ext4/img2ext4"
	"github.com/img2ext4/img2ext4/internal/registrytest"
	"github.com/img2ext4/img2ext4/internal/tartest"
	"github.com/img2ext4/img2ext4/store"
)

// TestConvertStored: the store's artifact is the bytes a conversion without the store
// writes; a hit on a digest makes no request, on a tag one manifest request; Convert
// through the store copies the artifact, its verity file and launch config out.
func TestConvertStored(t *testing.T) {
	reg := registrytest.GGCR(t)
	img := tartest.Image(helloLayers()...)
	tagRef := reg.Push(t, "test/img:1", img)
	d, _ := img.Digest()
	digestRef := reg.Host + "/test/img@" + d.String()
	ctx := context.Background()
	s, err := store.Open(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	opts := func(name string) []img2ext4.Option {
		return []img2ext4.Option{img2ext4.WithVerity(img2ext4.VerityOptions{Out: filepath.Join(dir, name+".verity")}),
			img2ext4.WithLaunchConfig(filepath.Join(dir, name+".json"))}
	}
	plain, err := img2ext4.Convert(ctx, digestRef, filepath.Join(dir, "plain.img"), opts("plain")...)
	if err != nil {
		t.Fatal(err)
	}

	res, a, err := img2ext4.ConvertStored(ctx, s, tagRef, opts("stored")...)
	if err != nil {
		t.Fatal(err)
	}
	if !a.Built || res.Layers != 3 || res.Verity.RootHash != plain.Verity.RootHash || res.Verity.HashFile != a.Path(img2ext4.ArtifactVerity) {
		t.Errorf("first ConvertStored: built %v, result %+v", a.Built, res)
	}
	sameFile(t, a.Path(img2ext4.ArtifactImage), filepath.Join(dir, "plain.img"))
	sameFile(t, a.Path(img2ext4.ArtifactVerity), filepath.Join(dir, "plain.verity"))

	reg.Reset()
	_, hit, err := img2ext4.ConvertStored(ctx, s, digestRef, opts("stored")...)
	if err != nil {
		t.Fatal(err)
	}
	if hit.Built || hit.Dir != a.Dir {
		t.Errorf("digest reference: built %v in %s, want a hit in %s", hit.Built, hit.Dir, a.Dir)
	}
	if c := reg.Counts(); len(c) != 0 {
		t.Errorf("a hit on a digest reference made requests: %v", c)
	}

	reg.Reset()
	out := filepath.Join(dir, "out.img")
	o := opts("out")
	res, err = img2ext4.Convert(ctx, tagRef, out, append(o, img2ext4.WithStore(s))...)
	if err != nil {
		t.Fatal(err)
	}
	if c := reg.Counts(); reg.Count(registrytest.ManifestGet, registrytest.ManifestHead) != 1 || reg.Count(registrytest.BlobGet, registrytest.BlobHead) != 0 {
		t.Errorf("a hit on a tag made %v requests, want one manifest request", c)
	}
	sameFile(t, out, filepath.Join(dir, "plain.img"))
	sameFile(t, filepath.Join(dir, "out.verity"), filepath.Join(dir, "plain.verity"))
	if res.Verity.HashFile != filepath.Join(dir, "out.verity") {
		t.Errorf("verity hash file %s", res.Verity.HashFile)
	}
	var lcPlain, lcOut img2ext4.LaunchConfig
	readJSON(t, filepath.Join(dir, "plain.json"), &lcPlain)
	readJSON(t, filepath.Join(dir, "out.json"), &lcOut)
	lcPlain.Verity.Open, lcOut.Verity.Open, lcPlain.Verity.HashFile, lcOut.Verity.HashFile = "", "", "", ""
	if a, b := jsonOf(lcPlain), jsonOf(lcOut); a != b {
		t.Errorf("launch config through the store\n%s\nwithout\n%s", b, a)
	}
	if rep, err := s.Verify(ctx); err != nil || !rep.OK() || rep.Checked != 1 {
		t.Errorf("verify: %+v, %v", rep, err)
	}
}

func sameFile(t *testing.T, got, want string) {
	t.Helper()
	a, err := os.ReadFile(got)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(want)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Errorf("%s (%d bytes) differs from %s (%d bytes)", got, len(a), want, len(b))
	}
}

func readJSON(t *testing.T, file string, v any) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

func jsonOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestStoreBlobCache: conversions through a store opened with OpenStore keep their blobs
// in its blob cache, so the same image converted with other options downloads no layer;
// Prune prunes the blobs with the artifacts.
func TestStoreBlobCache(t *testing.T) {
	reg := registrytest.GGCR(t)
	img := tartest.Image(helloLayers()...)
	ref := reg.Push(t, "test/img:1", img)
	ctx := context.Background()
	s, err := img2ext4.OpenStore(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	if _, a, err := img2ext4.ConvertStored(ctx, s, ref); err != nil || !a.Built {
		t.Fatalf("first conversion: %v", err)
	}
	reg.Reset()
	_, a, err := img2ext4.ConvertStored(ctx, s, ref, img2ext4.WithExt4(img2ext4.Ext4Options{Label: "other"}))
	if err != nil || !a.Built {
		t.Fatalf("conversion with other options: %v", err)
	}
	layers, _ := img.Layers()
	for i, l := range layers {
		d, _ := l.Digest()
		if n := reg.Blobs()[d.String()]; n != 0 {
			t.Errorf("layer %d fetched %d times by the second conversion, want 0", i, n)
		}
	}
	rep, err := s.Prune(ctx, store.PruneOptions{MaxSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Removed) != 2 || rep.Blobs == nil || rep.Blobs.Removed < len(layers) {
		t.Errorf("prune removed %d artifacts and blobs %+v; want 2 and every blob", len(rep.Removed), rep.Blobs)
	}
}
