package ext4writer

import (
	"errors"
	"fmt"
	"io/fs"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func stats(t *testing.T, img string) map[string]string {
	t.Helper()
	out := debugfs(t, img, "stats")
	m := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			if _, dup := m[k]; !dup {
				m[strings.TrimSpace(k)] = strings.TrimSpace(v)
			}
		}
	}
	return m
}

func TestOptions(t *testing.T) {
	needTools(t)
	uuid := [16]byte{0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	seed := [16]byte{1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0}
	ents := []entry{{name: "f", mode: 0o644, data: []byte("x")}}
	img := buildImage(t, ents, WithUUID(uuid), WithHashSeed(seed), WithLabel("mylabel"), WithInodeCount(5000),
		WithReservedPercent(0), WithReadOnly(), WithCreationTime(1700000000))
	fsck(t, img)
	st := stats(t, img)
	for k, want := range map[string]string{
		"Filesystem UUID":        "deadbeef-0102-0304-0506-0708090a0b0c",
		"Filesystem volume name": "mylabel",
		"Directory Hash Seed":    "01000000-0200-0000-0300-000004000000",
		"Reserved block count":   "0",
		"Default directory hash": "half_md4",
	} {
		if st[k] != want {
			t.Errorf("%s = %q, want %q", k, st[k], want)
		}
	}
	if n, _ := strconv.Atoi(st["Inode count"]); n < 5000 || n > 5000+16*4 {
		t.Errorf("inode count %s, want about 5000", st["Inode count"])
	}
	if !strings.Contains(st["Filesystem features"], "read-only") || !strings.Contains(st["Filesystem flags"], "unsigned_directory_hash") {
		t.Errorf("features %q flags %q", st["Filesystem features"], st["Filesystem flags"])
	}
	// default features: mke2fs 1.47 ext4 minus orphan_file, metadata_csum_seed, resize_inode
	def := stats(t, buildImage(t, ents))
	want := "has_journal ext_attr dir_index filetype extent 64bit flex_bg sparse_super large_file huge_file dir_nlink extra_isize metadata_csum"
	if def["Filesystem features"] != want {
		t.Errorf("features %q, want %q", def["Filesystem features"], want)
	}
	// journal sized as mke2fs does: 4 MiB for a 100 MiB image, 64 MiB for 4 GiB
	if _, err := exec.LookPath("dumpe2fs"); err == nil {
		for size, want := range map[int64]string{100 << 20: "4096k", 4 << 30: "64M"} {
			out, err := exec.Command("dumpe2fs", "-h", buildImage(t, ents, WithSize(size))).Output()
			if err != nil {
				t.Fatal(err)
			}
			if !regexp.MustCompile(`Total journal size:\s+` + want + `\n`).Match(out) {
				t.Errorf("size %d: journal not %s:\n%s", size, want, out)
			}
		}
	}
	leg := stats(t, buildImage(t, ents, WithLegacy(), WithoutJournal()))
	if want := "ext_attr dir_index filetype extent flex_bg sparse_super large_file huge_file uninit_bg dir_nlink extra_isize"; leg["Filesystem features"] != want {
		t.Errorf("legacy features %q, want %q", leg["Filesystem features"], want)
	}
	// too few inodes
	w, err := New(nopWriterAt{}, WithInodeCount(20))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		if err := w.Create(fmt.Sprint(i), &File{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); !errors.Is(err, ErrTooManyInodes) {
		t.Errorf("Close with too few inodes: %v", err)
	}
	// bad option values
	for _, o := range []Option{WithUUID([16]byte{}), WithHashSeed([16]byte{}), WithLabel(strings.Repeat("l", 17)),
		WithInodeCount(0), WithInodeRatio(10), WithReservedPercent(51), WithSize(1000), WithMaxSize(10), WithFreeSpace(-1)} {
		if _, err := New(nopWriterAt{}, o); err == nil {
			t.Errorf("option accepted a bad value")
		}
	}
	if _, err := New(nopWriterAt{}, WithSize(1<<30), WithMaxSize(1<<29)); err == nil {
		t.Error("size above max size accepted")
	}
}

func TestTooManyLinks(t *testing.T) {
	w, err := New(nopWriterAt{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Create("f", &File{}); err != nil {
		t.Fatal(err)
	}
	if err := w.Create("d", &File{Mode: fs.ModeDir}); err != nil {
		t.Fatal(err)
	}
	for i := range maxLinks - 1 {
		if err := w.Link("f", fmt.Sprintf("d/%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Link("f", "d/one-too-many"); !errors.Is(err, ErrTooManyLinks) {
		t.Fatalf("got %v, want ErrTooManyLinks", err)
	}
}
