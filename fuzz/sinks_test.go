package fuzz

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/img2ext4/img2ext4/internal/tartest"
	"github.com/img2ext4/img2ext4/internal/treesnap"
	"github.com/img2ext4/img2ext4/layerapply"
)

// names is a small name space, so that fuzzed programs collide often: replacements,
// whiteouts of existing entries, links to real targets, writes through symlinks.
var names = []string{"a", "b", "c", "a/x", "a/y", "b/x", "a/x/z", "c/d/e", "l", "a/l"}

var targets = []string{"a", "b", "../a", "/b", "a/x", "nowhere", "..", "/"}

// program turns fuzz bytes into layers: every two bytes are one operation.
func program(data []byte) [][]tartest.Entry {
	layers := [][]tartest.Entry{nil}
	for i := 0; i+1 < len(data); i += 2 {
		op, arg := data[i], data[i+1]
		n := names[int(arg)%len(names)]
		mode := tartest.Mode(int64(0o600 | int(arg)&0o177))
		var e tartest.Entry
		switch op % 9 {
		case 0:
			e = tartest.File(n, fmt.Sprintf("content %d", arg), mode)
		case 1:
			e = tartest.Dir(n, tartest.Mode(0o700|int64(arg)&0o55))
		case 2:
			e = tartest.Symlink(n, targets[int(arg>>4)%len(targets)])
		case 3:
			e = tartest.Link(n, names[int(arg>>4)%len(names)])
		case 4:
			e = tartest.Whiteout(n)
		case 5:
			e = tartest.Opaque(n)
		case 6:
			if len(layers) < 5 {
				layers = append(layers, nil)
			}
			continue
		case 7:
			e = tartest.File(n, "", tartest.Xattr("user.k", fmt.Sprint(arg)))
		case 8:
			e = tartest.Fifo(n)
		}
		layers[len(layers)-1] = append(layers[len(layers)-1], e)
	}
	return layers
}

// FuzzSinksAgree applies the same layers to the directory sink and to the tar sink, then
// unpacks the flattened tar with the directory sink: both trees must be equal, attribute for
// attribute, or both applies must fail.
func FuzzSinksAgree(f *testing.F) {
	f.Add([]byte{0, 0, 1, 1, 0, 3, 6, 0, 4, 0, 0, 4})
	f.Add([]byte{1, 0, 0, 3, 6, 0, 5, 0, 0, 4, 3, 0x30})
	f.Add([]byte{2, 0x00, 0, 1, 6, 0, 0, 3})
	f.Add([]byte{0, 3, 3, 0x00, 6, 0, 0, 0, 6, 0, 4, 3})
	f.Add([]byte{1, 7, 0, 6, 2, 0x28, 6, 0, 5, 7, 7, 7, 8, 2})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 200 {
			return
		}
		var tars [][]byte
		for _, l := range program(data) {
			tars = append(tars, tartest.Tar(l...))
		}
		img := tartest.Image(tars...)
		ctx := context.Background()
		tmp := t.TempDir()

		d, err := layerapply.NewDir(filepath.Join(tmp, "dir"))
		if err != nil {
			t.Fatal(err)
		}
		dirErr := layerapply.Apply(ctx, d, img)
		if dirErr == nil {
			dirErr = d.Close()
		} else {
			d.Abort()
		}
		var buf bytes.Buffer
		ts, _ := layerapply.NewTar(&buf, tmp)
		tarErr := layerapply.Apply(ctx, ts, img)
		if tarErr == nil {
			tarErr = ts.Close()
		} else {
			ts.Abort()
		}
		if (dirErr == nil) != (tarErr == nil) {
			t.Fatalf("sinks disagree: dir %v, tar %v", dirErr, tarErr)
		}
		if dirErr != nil {
			var ee *layerapply.EntryError
			if !errors.As(dirErr, &ee) {
				t.Fatalf("error without entry context: %v", dirErr)
			}
			return
		}
		flat, _ := layerapply.NewDir(filepath.Join(tmp, "flat"))
		if err := layerapply.Apply(ctx, flat, tartest.Image(buf.Bytes())); err != nil {
			t.Fatalf("flattened tar does not apply: %v", err)
		}
		if err := flat.Close(); err != nil {
			t.Fatal(err)
		}
		a, err := treesnap.Dir(filepath.Join(tmp, "dir"), treesnap.Options{})
		if err != nil {
			t.Fatal(err)
		}
		b, err := treesnap.Dir(filepath.Join(tmp, "flat"), treesnap.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if diff := treesnap.Diff(treesnap.Lines(a), treesnap.Lines(b)); diff != "" {
			t.Fatalf("dir sink and tar sink differ (-dir +tar):\n%s", diff)
		}
	})
}
