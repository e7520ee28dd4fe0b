package img2ext4_test

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/img2ext4/img2ext4"
	"github.com/img2ext4/img2ext4/internal/registrytest"
	"github.com/img2ext4/img2ext4/internal/tartest"
	"github.com/img2ext4/img2ext4/ocifetch"
)

// TestConvertBlobCache converts tag b after tag a, which shares three of its
// four layers, through one blob cache: only b's config and fourth layer are
// fetched from the registry (counted there); converting b again with other
// options (another format, another label) fetches no blob, and gives b's tree.
func TestConvertBlobCache(t *testing.T) {
	reg := registrytest.GGCR(t)
	layer := func(i int) []byte {
		return tartest.Tar(tartest.Dir("etc"), tartest.File(fmt.Sprintf("etc/layer%d", i), strings.Repeat(fmt.Sprint(i), 1000)))
	}
	a := tartest.Image(layer(0), layer(1), layer(2), layer(3))
	b := tartest.Image(layer(0), layer(1), layer(2), layer(4))
	reg.Push(t, "test/app:a", a)
	reg.Push(t, "test/app:b", b)
	take := func() map[string]int {
		defer reg.Reset()
		return reg.Blobs()
	}
	cache := filepath.Join(t.TempDir(), "blobs")
	ctx := context.Background()
	convert := func(tag string, opts ...img2ext4.Option) string {
		t.Helper()
		out := filepath.Join(t.TempDir(), "out")
		opts = append(opts, img2ext4.WithFetchOptions(ocifetch.WithBlobCache(cache)))
		if _, err := img2ext4.Convert(ctx, reg.Host+"/test/app:"+tag, out, opts...); err != nil {
			t.Fatal(err)
		}
		return out
	}
	digests := func(img v1.Image) []string {
		cfg, _ := img.ConfigName()
		ds := []string{cfg.String()}
		ls, _ := img.Layers()
		for _, l := range ls {
			d, _ := l.Digest()
			ds = append(ds, d.String())
		}
		return ds
	}

	convert("a")
	got := take()
	for _, d := range digests(a) {
		if got[d] != 1 {
			t.Errorf("tag a: blob %s fetched %d times, want 1", d, got[d])
		}
	}
	convert("b")
	db := digests(b)
	want := map[string]int{db[0]: 1, db[4]: 1}
	if got := take(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("tag b after tag a fetched %v, want only its config and fourth layer %v", got, want)
	}
	out := convert("b", img2ext4.WithFormat(img2ext4.FormatTar))
	convert("b", img2ext4.WithExt4(img2ext4.Ext4Options{Label: "other", Align: img2ext4.DefaultAlign}))
	if got := take(); len(got) != 0 {
		t.Errorf("converting tag b again with other options fetched %v, want no blob", got)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var names []string
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
	if got, want := strings.Join(names, " "), "etc/ etc/layer0 etc/layer1 etc/layer2 etc/layer4"; !strings.Contains(got, want) {
		t.Errorf("tag b's tar holds %s, want %s", got, want)
	}
}
