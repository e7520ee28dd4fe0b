package ocifetch

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/img2ext4/img2ext4/internal/tartest"
)

// layoutBlob is a document of the layout FuzzLayoutIndex writes.
type layoutBlob struct {
	mediaType string
	size      int64
	resolves  bool // to the linux/amd64 manifest, with WithPlatform(linux/amd64)
}

var sha256Digest = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// layoutModel is the oracle of FuzzLayoutIndex, written from the image-spec's
// image-layout.md and annotations.md (and containerd's io.containerd.image.name, which
// skopeo and containerd write): index.json lists descriptors; TAG names those whose
// org.opencontainers.image.ref.name or io.containerd.image.name is TAG, or the same
// Docker reference once normalised; without TAG the only descriptor, or all of them when
// none is named, is the image; several named ones and no TAG is an error, as is naming
// nothing. One chosen descriptor must match a manifest or index of the layout by digest
// and size (a media type other than the document's own, when set, is left undecided:
// FuzzDescriptors covers those). It returns decided false when it does not say; else
// whether the image resolves (to the linux/amd64 manifest, the only one of the layout
// for that platform).
func layoutModel(index []byte, tag string, blobs map[string]layoutBlob) (resolves, decided bool) {
	var idx struct {
		Manifests []struct {
			MediaType   string            `json:"mediaType"`
			Digest      string            `json:"digest"`
			Size        int64             `json:"size"`
			Annotations map[string]string `json:"annotations"`
			Platform    *struct {
				OS           string   `json:"os"`
				Architecture string   `json:"architecture"`
				OSVersion    string   `json:"os.version"`
				OSFeatures   []string `json:"os.features"`
				Variant      string   `json:"variant"`
				Features     []string `json:"features"`
			} `json:"platform"`
		} `json:"manifests"`
	}
	if json.Unmarshal(index, &idx) != nil {
		return false, true
	}
	for _, d := range idx.Manifests {
		if !sha256Digest.MatchString(d.Digest) {
			return false, false // ggcr's v1.Hash decides what else parses
		}
	}
	names := func(a map[string]string) []string {
		var ns []string
		for _, k := range []string{"org.opencontainers.image.ref.name", "io.containerd.image.name"} {
			if a[k] != "" {
				ns = append(ns, a[k])
			}
		}
		return ns
	}
	same := func(a, b string) bool {
		if a == b {
			return true
		}
		ra, err1 := name.ParseReference(a)
		rb, err2 := name.ParseReference(b)
		return err1 == nil && err2 == nil && ra.Name() == rb.Name()
	}
	var chosen []int
	named := false
	for i, d := range idx.Manifests {
		ns := names(d.Annotations)
		named = named || len(ns) > 0
		for _, n := range ns {
			if tag != "" && same(n, tag) {
				chosen = append(chosen, i)
				break
			}
		}
	}
	switch {
	case tag != "":
	case len(idx.Manifests) == 1 || !named:
		for i := range idx.Manifests {
			chosen = append(chosen, i)
		}
	default:
		return false, true
	}
	if len(chosen) == 0 {
		return false, true
	}
	if len(chosen) > 1 {
		return false, false
	}
	d := idx.Manifests[chosen[0]]
	b, ok := blobs[d.Digest]
	switch {
	case !ok || d.Size != b.size:
		return false, true
	case d.MediaType != "" && d.MediaType != b.mediaType:
		return false, false
	}
	return b.resolves, true
}

// FuzzLayoutIndex writes an OCI layout holding a linux/amd64 and a linux/arm64 image and
// an index of both, with a fuzzed index.json, and resolves it with
// ocifetch.Image("oci:DIR:TAG", WithPlatform(linux/amd64)): where layoutModel decides,
// it resolves iff the model says so, and whatever resolves is the linux/amd64 manifest.
func FuzzLayoutIndex(f *testing.F) {
	dir := f.TempDir()
	write := func(name string, b []byte) {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			f.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			f.Fatal(err)
		}
	}
	write("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
	blobs := map[string]layoutBlob{}
	var descs []v1.Descriptor
	var amd64 v1.Hash
	for _, arch := range []string{"amd64", "arm64"} {
		img := mutate.MediaType(tartest.Image(tartest.Tar(tartest.File("f", arch))), types.OCIManifestSchema1)
		cf, err := img.ConfigFile()
		if err != nil {
			f.Fatal(err)
		}
		cf = cf.DeepCopy()
		cf.Architecture = arch
		if img, err = mutate.ConfigFile(img, cf); err != nil {
			f.Fatal(err)
		}
		raw, _ := img.RawManifest()
		rawCfg, _ := img.RawConfigFile()
		d, _ := img.Digest()
		cd, _ := img.ConfigName()
		write("blobs/sha256/"+d.Hex, raw)
		write("blobs/sha256/"+cd.Hex, rawCfg)
		ls, _ := img.Layers()
		for _, l := range ls {
			ld, _ := l.Digest()
			rc, _ := l.Compressed()
			b, _ := io.ReadAll(rc)
			rc.Close()
			write("blobs/sha256/"+ld.Hex, b)
		}
		blobs[d.String()] = layoutBlob{mediaType: string(types.OCIManifestSchema1), size: int64(len(raw)), resolves: arch == "amd64"}
		descs = append(descs, v1.Descriptor{MediaType: types.OCIManifestSchema1, Digest: d, Size: int64(len(raw)),
			Platform: &v1.Platform{OS: "linux", Architecture: arch}})
		if arch == "amd64" {
			amd64 = d
		}
	}
	rawIdx, err := json.Marshal(v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: descs})
	if err != nil {
		f.Fatal(err)
	}
	id := sha256Of(rawIdx)
	write("blobs/sha256/"+id.Hex, rawIdx)
	blobs[id.String()] = layoutBlob{mediaType: string(types.OCIImageIndex), size: int64(len(rawIdx)), resolves: true}
	entry := func(d string, size int, mt string, ann string) string {
		return fmt.Sprintf(`{"mediaType":%q,"digest":%q,"size":%d%s}`, mt, d, size, ann)
	}
	ref := `,"annotations":{"org.opencontainers.image.ref.name":"v1"}`
	ctrd := `,"annotations":{"io.containerd.image.name":"docker.io/library/app:v2"}`
	amdE := entry(descs[0].Digest.String(), int(descs[0].Size), string(types.OCIManifestSchema1), ref)
	armE := entry(descs[1].Digest.String(), int(descs[1].Size), string(types.OCIManifestSchema1), ctrd)
	idxE := entry(id.String(), len(rawIdx), string(types.OCIImageIndex), `,"annotations":{"org.opencontainers.image.ref.name":"multi"}`)
	for _, s := range []struct{ index, tag string }{
		{`{"schemaVersion":2,"manifests":[` + amdE + `]}`, ""},
		{`{"schemaVersion":2,"manifests":[` + amdE + `]}`, "v1"},
		{`{"schemaVersion":2,"manifests":[` + amdE + `]}`, "v2"},
		{`{"schemaVersion":2,"manifests":[` + amdE + `,` + armE + `,` + idxE + `]}`, ""},
		{`{"schemaVersion":2,"manifests":[` + amdE + `,` + armE + `,` + idxE + `]}`, "app:v2"},
		{`{"schemaVersion":2,"manifests":[` + amdE + `,` + armE + `,` + idxE + `]}`, "multi"},
		{`{"schemaVersion":2,"manifests":[` + entry(descs[0].Digest.String(), int(descs[0].Size), "", "") + `,` + entry(descs[1].Digest.String(), int(descs[1].Size), "", "") + `]}`, ""},
		{`{"schemaVersion":2,"manifests":[` + entry(id.String(), len(rawIdx)-1, string(types.OCIImageIndex), "") + `]}`, ""},
		{`{"schemaVersion":2,"manifests":[` + entry(descs[0].Digest.String(), int(descs[0].Size), string(types.OCIManifestSchema1), ctrd) + `,` + idxE + `]}`, "app:v2"},
		{`{"schemaVersion":2,"manifests":[]}`, ""},
		{`{"manifests":[{"digest":"sha256:x"}]}`, ""},
	} {
		f.Add([]byte(s.index), s.tag)
	}
	p := v1.Platform{OS: "linux", Architecture: "amd64"}
	f.Fuzz(func(t *testing.T, index []byte, tag string) {
		if len(index) > 1<<16 {
			return
		}
		if err := os.WriteFile(filepath.Join(dir, "index.json"), index, 0o644); err != nil {
			t.Fatal(err)
		}
		ref := "oci:" + dir
		if tag != "" {
			ref += ":" + tag
		}
		img, err := Image(context.Background(), ref, WithPlatform(p))
		resolves, decided := layoutModel(index, tag, blobs)
		if decided && resolves != (err == nil) {
			t.Fatalf("index.json %s, tag %q: model resolves %v, Image: %v", index, tag, resolves, err)
		}
		if err != nil {
			return
		}
		if d, err := img.Digest(); err != nil || d != amd64 {
			t.Fatalf("index.json %s, tag %q: resolved to %v (%v), not the linux/amd64 manifest %v", index, tag, d, err, amd64)
		}
	})
}
