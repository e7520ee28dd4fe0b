package layerapply_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/img2ext4/img2ext4/internal/tartest"
	"github.com/img2ext4/img2ext4/layerapply"
)

// TestLimitsEach lowers each limit below what one image needs: the image applies with the
// defaults and fails with a *LimitError whose What names the lowered limit.
func TestLimitsEach(t *testing.T) {
	deep := strings.Repeat("d/", 9) + "f" // 10 components
	l1 := tartest.Tar(
		tartest.File("a", "1"), tartest.File("b", strings.Repeat("x", 5000)),
		tartest.File(deep, "deep"),
		tartest.File("x", "attrs", tartest.Xattr("user.one", "1"), tartest.Xattr("user.two", "2"), tartest.Xattr("user.three", strings.Repeat("3", 300))),
	)
	l2 := tartest.Tar(tartest.File("c", "3"))
	img := tartest.Image(l1, l2)
	apply := func(t *testing.T, opts ...layerapply.Option) error {
		d, err := layerapply.NewDir(filepath.Join(t.TempDir(), "r"))
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		return layerapply.Apply(context.Background(), d, img, opts...)
	}
	if err := apply(t); err != nil {
		t.Fatalf("with the default limits: %v", err)
	}
	for _, tc := range []struct {
		what string
		lim  layerapply.Limits
	}{
		{layerapply.LimitEntries, layerapply.Limits{Entries: 3}},
		{layerapply.LimitBytes, layerapply.Limits{Bytes: 4096}},
		{layerapply.LimitPathLen, layerapply.Limits{PathLen: len(deep) - 1}},
		{layerapply.LimitDepth, layerapply.Limits{Depth: 9}},
		{layerapply.LimitXattrs, layerapply.Limits{Xattrs: 2}},
		{layerapply.LimitXattrBytes, layerapply.Limits{XattrBytes: 300}},
		{layerapply.LimitLayers, layerapply.Limits{Layers: 1}},
	} {
		t.Run(tc.what, func(t *testing.T) {
			err := apply(t, layerapply.WithLimits(tc.lim))
			var le *layerapply.LimitError
			if !errors.Is(err, layerapply.ErrLimit) || !errors.As(err, &le) || le.What != tc.what {
				t.Fatalf("err = %v, want a LimitError for %s", err, tc.what)
			}
		})
	}
	for _, l := range []layerapply.Limits{{Depth: -1}, {Xattrs: -1}, {Layers: -1}} {
		if err := apply(t, layerapply.WithLimits(l)); err == nil {
			t.Errorf("negative limit %+v accepted", l)
		}
	}
}
