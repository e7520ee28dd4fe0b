package layerapply_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/img2ext4/img2ext4/internal/ruletest"
	"github.com/img2ext4/img2ext4/internal/tartest"
	"github.com/img2ext4/img2ext4/internal/treesnap"
	"github.com/img2ext4/img2ext4/layerapply"
)

type E = tartest.Entry

var (
	dir     = tartest.Dir
	file    = tartest.File
	symlink = tartest.Symlink
	link    = tartest.Link
	wh      = tartest.Whiteout
)

func layers(ls ...[]E) [][]byte {
	out := make([][]byte, len(ls))
	for i, l := range ls {
		out[i] = tartest.Tar(l...)
	}
	return out
}

// applyDir applies the layers into a fresh directory and returns its short listing.
func applyDir(t *testing.T, tars [][]byte) ([]string, error) {
	lines, _, err := applyDirSkipped(t, tars)
	return lines, err
}

// applyDirSkipped is applyDir that also returns what the sink skipped for lack of root.
func applyDirSkipped(t *testing.T, tars [][]byte) ([]string, layerapply.Skipped, error) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "rootfs")
	d, err := layerapply.NewDir(root)
	if err != nil {
		t.Fatal(err)
	}
	err = layerapply.Apply(context.Background(), d, tartest.Image(tars...))
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, d.Skipped(), err
	}
	es, err := treesnap.Dir(root, treesnap.Options{NoXattrs: true})
	if err != nil {
		t.Fatal(err)
	}
	return treesnap.ShortLines(es), d.Skipped(), nil
}

// deviceLine matches a character or block device in a short listing.
var deviceLine = regexp.MustCompile(`^\S+ [cb] \d+,\d+$`)

// applyTar applies the layers into the tar sink and returns the short listing of the tar.
func applyTar(t *testing.T, tars [][]byte) ([]string, error) {
	t.Helper()
	var buf bytes.Buffer
	s, err := layerapply.NewTar(&buf, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	err = layerapply.Apply(context.Background(), s, tartest.Image(tars...))
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	return tarShort(t, buf.Bytes()), nil
}

// tarShort lists a flattened tar in treesnap's short format.
func tarShort(t *testing.T, b []byte) []string {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(b))
	var es []treesnap.Entry
	group := map[string]string{} // name -> first name
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == "./" {
			continue // the root, which treesnap listings leave out
		}
		e := treesnap.Entry{Path: strings.TrimSuffix(h.Name, "/")}
		switch h.Typeflag {
		case tar.TypeDir:
			e.Type = 'd'
		case tar.TypeReg:
			e.Type = 'f'
			c, _ := io.ReadAll(tr)
			e.Content = string(c)
			if len(c) > 256 {
				e.Content = fmt.Sprintf("sha256:%x", sha256.Sum256(c))
			}
		case tar.TypeSymlink:
			e.Type, e.Content = 'l', h.Linkname
		case tar.TypeLink:
			for i := range es {
				if es[i].Path == h.Linkname {
					e.Type, e.Content = es[i].Type, es[i].Content
				}
			}
			group[e.Path] = h.Linkname
			group[h.Linkname] = h.Linkname
		case tar.TypeChar:
			e.Type, e.Major, e.Minor = 'c', uint32(h.Devmajor), uint32(h.Devminor)
		case tar.TypeBlock:
			e.Type, e.Major, e.Minor = 'b', uint32(h.Devmajor), uint32(h.Devminor)
		case tar.TypeFifo:
			e.Type = 'p'
		}
		es = append(es, e)
	}
	firsts := map[string]string{}
	for n, f := range group {
		if cur, ok := firsts[f]; !ok || n < cur {
			firsts[f] = n
		}
	}
	for i := range es {
		if f, ok := group[es[i].Path]; ok {
			es[i].Link = firsts[f]
		}
	}
	slices.SortFunc(es, func(a, b treesnap.Entry) int { return strings.Compare(a.Path, b.Path) })
	return treesnap.ShortLines(es)
}

func TestRules(t *testing.T) {
	for _, tc := range ruletest.Cases {
		t.Run(tc.Name, func(t *testing.T) {
			tars := tc.Tars()
			var skipped layerapply.Skipped
			dirSink := func(t *testing.T, tars [][]byte) (lines []string, err error) {
				lines, skipped, err = applyDirSkipped(t, tars)
				return lines, err
			}
			for _, sink := range []struct {
				name string
				fn   func(*testing.T, [][]byte) ([]string, error)
			}{{"dir", dirSink}, {"tar", applyTar}} {
				got, err := sink.fn(t, tars)
				if tc.WantErrText != "" {
					if err == nil || !strings.Contains(err.Error(), tc.WantErrText) {
						t.Fatalf("%s: err = %v, want %s", sink.name, err, tc.WantErrText)
					}
					continue
				}
				if tc.WantErr != nil {
					if !errors.Is(err, tc.WantErr) {
						t.Fatalf("%s: err = %v, want %v", sink.name, err, tc.WantErr)
					}
					var ee *layerapply.EntryError
					if !errors.As(err, &ee) || ee.Layer == "" || ee.Name == "" {
						t.Fatalf("%s: err %v does not name the layer and entry", sink.name, err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("%s: %v", sink.name, err)
				}
				want := tc.Want
				if sink.name == "dir" && os.Geteuid() != 0 {
					// Without root a directory cannot hold device nodes: the sink must
					// skip exactly those and count them (the tar sink checks them all).
					want = slices.DeleteFunc(slices.Clone(want), deviceLine.MatchString)
					if n := len(tc.Want) - len(want); skipped.Devices != n {
						t.Errorf("dir sink, not root: %d device nodes counted as skipped, want %d", skipped.Devices, n)
					}
				}
				if d := treesnap.Diff(want, got); d != "" {
					t.Errorf("%s sink: tree differs (-want +got):\n%s", sink.name, d)
				}
			}
		})
	}
}

func TestMain(m *testing.M) {
	os.Exit(m.Run())
}
