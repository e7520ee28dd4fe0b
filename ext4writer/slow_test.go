//go:build slow

package ext4writer

import (
	"os"
	"strings"
	"testing"
)

// TestHugeDir puts one million entries in one directory, which needs a
// two-level htree. Run with -tags slow.
func TestHugeDir(t *testing.T) {
	needTools(t)
	const n = 1000000
	ents := bigDirEntries(n)
	img := buildImage(t, ents, WithInodeRatio(4096))
	fsck(t, img)
	if f := stats(t, img)["Filesystem features"]; strings.Contains(f, "large_dir") {
		t.Errorf("large_dir set without need: %s", f)
	}
	if got := countLs(t, img, "/d"); got != n {
		t.Errorf("debugfs lists %d entries, want %d", got, n)
	}
	if os.Geteuid() == 0 {
		checkTree(t, ents, mountTree(t, img))
	}
}

// TestGeometryMillionFiles: a million empty files in groups sized as
// mke2fs -N sizes them. Run with -tags slow.
func TestGeometryMillionFiles(t *testing.T) {
	needTools(t)
	checkManyFiles(t, 1000000, 5)
}
