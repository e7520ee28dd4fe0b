package layerapply_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/img2ext4/img2ext4/internal/ruletest"
	"github.com/img2ext4/img2ext4/internal/tartest"
	"github.com/img2ext4/img2ext4/layerapply"
)

// fuzzLimits are small enough for fuzzed layers to pass each of them.
var fuzzLimits = layerapply.Limits{Entries: 40, Bytes: 64 << 10, PathLen: 100, XattrBytes: 200, Depth: 6, Xattrs: 3, Layers: 2}

// tarStats is what archive/tar reads of a layer, measured against fuzzLimits here and not
// by layerapply: over reports, for each limit (by its LimitError What), whether a member
// passes it.
type tarStats struct {
	entries int64
	over    map[string]bool
}

// measure reads the members of an uncompressed tar with archive/tar, up to the end or the
// first error, as Apply counts them: every member but PAX global headers is an entry;
// names and link targets are measured raw; extended-attribute records (SCHILY.xattr.,
// LIBARCHIVE.xattr., SCHILY.acl.) count per member, and their keys and values together
// count against XattrBytes on the members whose attributes are used: not hard links,
// not whiteout markers.
func measure(b []byte) tarStats {
	st := tarStats{over: map[string]bool{}}
	tr := tar.NewReader(bytes.NewReader(b))
	depth := func(p string) int {
		n := 0
		for _, c := range strings.Split(p, "/") {
			if c != "" && c != "." {
				n++
			}
		}
		return n
	}
	for {
		h, err := tr.Next()
		if err != nil {
			return st
		}
		if h.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		st.entries++
		if len(h.Name) > fuzzLimits.PathLen || len(h.Linkname) > fuzzLimits.PathLen {
			st.over[layerapply.LimitPathLen] = true
		}
		if depth(h.Name) > fuzzLimits.Depth || h.Typeflag == tar.TypeLink && depth(h.Linkname) > fuzzLimits.Depth {
			st.over[layerapply.LimitDepth] = true
		}
		n, size := 0, 0
		for k, v := range h.PAXRecords {
			if strings.HasPrefix(k, "SCHILY.xattr.") || strings.HasPrefix(k, "LIBARCHIVE.xattr.") || strings.HasPrefix(k, "SCHILY.acl.") {
				n++
				size += len(k) + len(v)
			}
		}
		if n > fuzzLimits.Xattrs {
			st.over[layerapply.LimitXattrs] = true
		}
		base := h.Name[strings.LastIndexByte(strings.TrimSuffix(h.Name, "/"), '/')+1:]
		if size > fuzzLimits.XattrBytes && h.Typeflag != tar.TypeLink && !strings.HasPrefix(base, ".wh.") {
			st.over[layerapply.LimitXattrBytes] = true
		}
	}
}

// FuzzApply feeds arbitrary bytes as a layer on top of a fixed lower layer, with small
// limits: Apply may refuse them, but must not panic and must never touch anything outside
// the destination. The limits are checked against the layers as archive/tar reads them
// (measure): a clean Apply means no limit was passed (entries over both layers, the
// uncompressed bytes of both, path length and depth, xattr count and size), and a
// LimitError names a limit the layers do pass.
func FuzzApply(f *testing.F) {
	for _, tc := range ruletest.Cases {
		for _, l := range tc.Tars() {
			f.Add(l)
		}
	}
	f.Add([]byte{})
	f.Add(bytes.Repeat([]byte{0}, 1024))
	f.Add(tartest.Tar(tartest.File("a/b/c/d/e/f/g", "x"), tartest.File("x", "", tartest.Xattr("user.a", "1"), tartest.Xattr("user.b", "2"), tartest.Xattr("user.c", "3"), tartest.Xattr("user.d", "4"))))
	f.Add(tartest.Tar(tartest.File(strings.Repeat("n", 101), ""), tartest.File("y", "", tartest.Xattr("user.big", strings.Repeat("v", 200)))))
	f.Add(tartest.Tar(tartest.File("big", strings.Repeat("b", 64<<10))))
	lower := tartest.Tar(tartest.Dir("a"), tartest.File("a/x", "1"), tartest.Symlink("up", "../.."),
		tartest.Symlink("abs", "/"), tartest.Dir("d"), tartest.File("d/f", "2"), tartest.Link("h", "a/x"))
	lim := layerapply.WithLimits(fuzzLimits)
	lowerStats := measure(lower)
	f.Fuzz(func(t *testing.T, data []byte) {
		tmp := t.TempDir()
		outside := filepath.Join(tmp, "outside")
		os.Mkdir(outside, 0o755)
		os.WriteFile(filepath.Join(outside, "sentinel"), []byte("keep"), 0o644)
		img := imageOf(t,
			&rawLayer{blob: lower, diffID: hashOf(lower)},
			&rawLayer{blob: data, diffID: hashOf(data)})
		st := measure(data)
		st.entries += lowerStats.entries
		if st.entries > fuzzLimits.Entries {
			st.over[layerapply.LimitEntries] = true
		}
		if int64(len(lower)+len(data)) > fuzzLimits.Bytes {
			st.over[layerapply.LimitBytes] = true
		}
		checkLimits := func(sink string, err error) {
			t.Helper()
			var le *layerapply.LimitError
			switch {
			case err == nil:
				for what := range st.over {
					t.Fatalf("%s sink: the layers pass the %s limit, and Apply succeeds", sink, what)
				}
			case errors.As(err, &le):
				if !st.over[le.What] {
					t.Fatalf("%s sink: %v, but the layers are within it (archive/tar reads %d entries, over: %v)", sink, err, st.entries, st.over)
				}
			}
		}

		d, err := layerapply.NewDir(filepath.Join(tmp, "root"))
		if err != nil {
			t.Fatal(err)
		}
		err = layerapply.Apply(context.Background(), d, img, lim)
		checkLimits("dir", err)
		if err == nil {
			d.Close()
		} else {
			d.Abort()
		}
		var buf bytes.Buffer
		ts, _ := layerapply.NewTar(&buf, tmp)
		err = layerapply.Apply(context.Background(), ts, img, lim)
		checkLimits("tar", err)
		if err == nil {
			if err := ts.Close(); err != nil {
				t.Fatalf("tar sink close after a clean apply: %v", err)
			}
		} else {
			ts.Abort()
		}

		entries, _ := os.ReadDir(tmp)
		for _, e := range entries {
			if e.Name() != "outside" && e.Name() != "root" {
				t.Fatalf("apply created %s beside the destination", e.Name())
			}
		}
		got, _ := os.ReadDir(outside)
		b, _ := os.ReadFile(filepath.Join(outside, "sentinel"))
		if len(got) != 1 || string(b) != "keep" {
			t.Fatalf("outside changed: %v %q", got, b)
		}
	})
}
