package cacert_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/img2ext4/img2ext4/internal/tartest"
	"github.com/img2ext4/img2ext4/layerapply"
)

// rootFS applies entries, as one layer, to a directory sink in a temporary directory and
// returns layerapply's RootFS over the merged tree and the directory holding it.
func rootFS(t testing.TB, entries []tartest.Entry) (layerapply.RootFS, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "root")
	sink, err := layerapply.NewDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := layerapply.NewMerger(sink)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(); sink.Close() })
	if err := m.Apply(context.Background(), tartest.Image(tartest.Tar(entries...))); err != nil {
		t.Fatal(err)
	}
	fsys, err := m.RootFS()
	if err != nil {
		t.Fatal(err)
	}
	return fsys, dir
}
