package ocifetch

import (
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// TestLocalPaths resolves local images named without a transport: OCI layout
// directories and OCI, docker and compressed archives, absolute and relative, with a
// tag; refuses a local path that holds no image, a missing one (naming the transports),
// and a bare name that is both a local image and a registry reference. A bare name with
// no local image of that name stays a registry reference.
func TestLocalPaths(t *testing.T) {
	dir := t.TempDir()
	img := randomImage(t, 300, 2, nil)
	lay := filepath.Join(dir, "layout")
	writeLayout(t, lay, []v1.Image{img}, []string{"v1"})
	tarDir(t, lay, filepath.Join(dir, "oci.tar"))
	tag, _ := name.NewTag("example.com/a:v1")
	if err := tarball.WriteToFile(filepath.Join(dir, "save.tar"), tag, img); err != nil {
		t.Fatal(err)
	}
	newSave := filepath.Join(dir, "new-save.tar")
	writeNewDockerSave(t, newSave)
	b, _ := os.ReadFile(filepath.Join(dir, "save.tar"))
	f, _ := os.Create(filepath.Join(dir, "save.tar.gz"))
	zw := gzip.NewWriter(f)
	zw.Write(b)
	zw.Close()
	f.Close()
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not an image\n"), 0o644)
	os.Mkdir(filepath.Join(dir, "plain-dir"), 0o755)
	tarFiles(t, filepath.Join(dir, "other.tar"), []string{"x"}, map[string][]byte{"x": []byte("x")})
	t.Chdir(dir)

	for _, ref := range []string{
		lay, lay + ":v1", "./layout", "./layout:v1", "../" + filepath.Base(dir) + "/layout",
		filepath.Join(dir, "oci.tar"), "./oci.tar", "./oci.tar:v1",
		"./save.tar", "./save.tar:example.com/a:v1", "./save.tar.gz",
	} {
		t.Run(ref, func(t *testing.T) {
			got, err := Image(ctxBG, ref)
			if err != nil {
				t.Fatal(err)
			}
			layers, _ := got.Layers()
			sameLayers(t, img, layers)
		})
	}
	t.Run("new docker save", func(t *testing.T) {
		if _, err := Image(ctxBG, "./new-save.tar"); err != nil {
			t.Fatal(err)
		}
	})
	for ref, want := range map[string]string{
		"./missing":        "local image ./missing: no such file or directory (a local image is an OCI layout directory (oci:DIR[:TAG])",
		"/nonexistent/img": "no such file or directory",
		"./notes.txt":      "neither an OCI layout directory (no oci-layout file) nor an image archive",
		"./plain-dir":      "neither an OCI layout directory",
		"./other.tar":      "holds neither an OCI layout (index.json) nor a docker save (manifest.json)",
		"layout":           `"layout" names both a local image and a registry image: write oci:layout (or ./layout) for the local one, docker://layout for the registry`,
		"oci.tar":          "write oci-archive:oci.tar (or ./oci.tar)",
	} {
		t.Run(ref, func(t *testing.T) {
			_, err := Image(ctxBG, ref)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("err = %v, want it to say %q", err, want)
			}
		})
	}
	// Names that exist locally but are no image, and names that do not exist, stay
	// registry references.
	for _, ref := range []string{"notes.txt", "plain-dir", "alpine", "example.com/app:1"} {
		r, err := parseReference(ref)
		if err != nil || r.transport != transportRegistry {
			t.Errorf("parseReference(%q) = %v, %v; want a registry reference", ref, r, err)
		}
	}
}
