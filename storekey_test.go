package img2ext4_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/img2ext4/img2ext4"
	"github.com/img2ext4/img2ext4/internal/registrytest"
	"github.com/img2ext4/img2ext4/internal/tartest"
	"github.com/img2ext4/img2ext4/layerapply"
)

func TestStoreKey(t *testing.T) {
	reg := registrytest.GGCR(t)
	img := tartest.Image(helloLayers()...)
	tagRef := reg.Push(t, "test/img:1", img)
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	digestRef := reg.Host + "/test/img@" + d.String()
	ctx := context.Background()

	reg.Reset()
	kd, in, err := img2ext4.StoreKey(ctx, digestRef)
	if err != nil {
		t.Fatal(err)
	}
	if c := reg.Counts(); len(c) != 0 {
		t.Errorf("key of a digest reference made requests: %v", c)
	}
	if in.Source != d.String() || in.Format != "ext4" || in.Platform == "" || in.Version == "" {
		t.Errorf("inputs = %+v", in)
	}
	reg.Reset()
	kt, _, err := img2ext4.StoreKey(ctx, tagRef)
	if err != nil {
		t.Fatal(err)
	}
	if c := reg.Counts(); reg.Count(registrytest.ManifestGet, registrytest.ManifestHead) != 1 || reg.Count(registrytest.BlobGet, registrytest.BlobHead) != 0 {
		t.Errorf("key of a tag made %v requests, want 1 manifest and no blob", c)
	}
	if kt != kd {
		t.Errorf("tag and digest of one manifest give keys %s and %s", kt, kd)
	}

	add := filepath.Join(t.TempDir(), "agent")
	if err := os.WriteFile(add, []byte("v1"), 0o755); err != nil {
		t.Fatal(err)
	}
	keyOf := func(opts ...img2ext4.Option) string {
		t.Helper()
		k, _, err := img2ext4.StoreKey(ctx, digestRef, opts...)
		if err != nil {
			t.Fatal(err)
		}
		return string(k)
	}
	withAdd := keyOf(img2ext4.WithAdd(img2ext4.Add{Src: add, Dst: "/sbin/agent"}))
	seen := map[string]string{kd.String(): "default", withAdd: "add"}
	for _, tc := range []struct {
		name string
		opts []img2ext4.Option
	}{
		{"tar", []img2ext4.Option{img2ext4.WithFormat(img2ext4.FormatTar)}},
		{"label", []img2ext4.Option{img2ext4.WithExt4(img2ext4.Ext4Options{Label: "x"})}},
		{"verity", []img2ext4.Option{img2ext4.WithVerity(img2ext4.VerityOptions{})}},
		{"strict", []img2ext4.Option{img2ext4.WithStrict(true)}},
		{"limits", []img2ext4.Option{img2ext4.WithLimits(layerapply.Limits{Entries: 10})}},
		{"add elsewhere", []img2ext4.Option{img2ext4.WithAdd(img2ext4.Add{Src: add, Dst: "/sbin/agent2"})}},
		{"add content", func() []img2ext4.Option {
			if err := os.WriteFile(add, []byte("v2"), 0o755); err != nil {
				t.Fatal(err)
			}
			return []img2ext4.Option{img2ext4.WithAdd(img2ext4.Add{Src: add, Dst: "/sbin/agent"})}
		}()},
	} {
		k := keyOf(tc.opts...)
		if prev, ok := seen[k]; ok {
			t.Errorf("%s gives the same key as %s", tc.name, prev)
		}
		seen[k] = tc.name
	}
	// Options that do not change the bytes do not change the key.
	if k := keyOf(img2ext4.WithTempDir(t.TempDir())); k != kd.String() {
		t.Error("the temporary directory changed the key")
	}
	_, _, err = img2ext4.StoreKey(ctx, digestRef, img2ext4.WithMutate(func(context.Context, layerapply.RootFS) error { return nil }))
	if !errors.Is(err, img2ext4.ErrNotKeyable) {
		t.Errorf("with a mutation: %v, want ErrNotKeyable", err)
	}
	if !strings.HasPrefix(kd.String(), "sha256:") {
		t.Errorf("key %s", kd)
	}
}
