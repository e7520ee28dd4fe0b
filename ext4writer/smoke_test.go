package ext4writer

import (
	"io/fs"
	"testing"
	"time"
)

func TestSmoke(t *testing.T) {
	needTools(t)
	img := buildImage(t, []entry{
		{name: "a", mode: fs.ModeDir | 0o755, mtime: time.Unix(1000, 5)},
		{name: "a/hello", mode: 0o644, data: []byte("hello world\n")},
		{name: "s", mode: fs.ModeSymlink | 0o777, link: "a/hello"},
	})
	fsck(t, img)
	tr := readTree(t, img)
	for p, n := range tr {
		t.Logf("%s %+v", p, *n)
	}
}
