package ocifetch

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// rawIndex is a manifest for remote.Put: raw bytes of an index.
type rawIndex []byte

func (r rawIndex) RawManifest() ([]byte, error)        { return r, nil }
func (r rawIndex) MediaType() (types.MediaType, error) { return types.OCIImageIndex, nil }

// lyingIndex returns an index whose only child, for the running platform,
// is made by child, and the bytes of the same index with that child's
// descriptor saying media type says.
func lyingIndex(t *testing.T, child func(p v1.Platform) mutate.Appendable, says types.MediaType) (v1.ImageIndex, []byte) {
	t.Helper()
	p := defaultPlatform()
	idx := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: child(p), Descriptor: v1.Descriptor{Platform: &p}})
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	m.Manifests[0].MediaType = says
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return idx, raw
}

// writeLyingLayout writes a layout of idx whose index.json points to raw
// instead of idx.
func writeLyingLayout(t *testing.T, dir string, idx v1.ImageIndex, raw []byte) {
	t.Helper()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendIndex(idx); err != nil {
		t.Fatal(err)
	}
	h := sha256Of(raw)
	if err := p.WriteBlob(h, io.NopCloser(bytes.NewReader(raw))); err != nil {
		t.Fatal(err)
	}
	top, err := json.Marshal(v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{
		{MediaType: types.OCIImageIndex, Digest: h, Size: int64(len(raw))},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "index.json"), top, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestDescriptorMismatch(t *testing.T) {
	isolateCredentials(t)
	indexChild := func(p v1.Platform) mutate.Appendable {
		inner, _ := multiPlatformIndex(t, p)
		return inner
	}
	manifestChild := func(p v1.Platform) mutate.Appendable {
		return mutate.MediaType(randomImage(t, 256, 1, &p), types.OCIManifestSchema1)
	}
	dockerChild := func(p v1.Platform) mutate.Appendable {
		return mutate.MediaType(randomImage(t, 256, 1, &p), types.DockerManifestSchema2)
	}
	for _, tc := range []struct {
		name  string
		child func(p v1.Platform) mutate.Appendable
		says  types.MediaType
		found string
	}{
		{"manifest descriptor, index document", indexChild, types.OCIManifestSchema1, `the document is "application/vnd.oci.image.index.v1+json"`},
		{"index descriptor, manifest document", manifestChild, types.OCIImageIndex, `the document is "application/vnd.oci.image.manifest.v1+json"`},
		{"OCI descriptor, Docker document", dockerChild, types.OCIManifestSchema1, `the document is "application/vnd.docker.distribution.manifest.v2+json"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			idx, raw := lyingIndex(t, tc.child, tc.says)
			dir := filepath.Join(t.TempDir(), "layout")
			writeLyingLayout(t, dir, idx, raw)
			tarDir(t, dir, dir+".tar")
			_, host := newRegistry(t, nil)
			r, err := parseReference(host + "/lying:1")
			if err != nil {
				t.Fatal(err)
			}
			if err := remoteWriteIndex(r, idx); err != nil {
				t.Fatal(err)
			}
			if err := remote.Put(r.ref, rawIndex(raw)); err != nil {
				t.Fatal(err)
			}
			for _, ref := range []string{host + "/lying:1", "oci:" + dir, "oci-archive:" + dir + ".tar"} {
				_, err := Image(ctxBG, ref)
				var de *DescriptorError
				if !errors.As(err, &de) || !errors.Is(err, ErrDescriptorMismatch) || !strings.Contains(err.Error(), tc.found) ||
					!strings.Contains(err.Error(), "index child sha256:") || !strings.Contains(err.Error(), "the descriptor says") {
					t.Errorf("%s: err = %v, want a *DescriptorError saying %q", ref, err, tc.found)
				}
			}
		})
	}
}

func TestDescriptorUnusable(t *testing.T) {
	h := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("a", 64)}
	for _, tc := range []struct {
		d    v1.Descriptor
		want string
	}{
		{v1.Descriptor{Size: 1}, "config: the descriptor has no digest"},
		{v1.Descriptor{Digest: h, Size: -1}, "the descriptor has a negative size (-1)"},
	} {
		if err := checkDescriptor(tc.d, "config"); !errors.Is(err, ErrDescriptorMismatch) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("checkDescriptor(%+v) = %v, want %q", tc.d, err, tc.want)
		}
	}
	if err := checkDescriptor(v1.Descriptor{Digest: h}, "config"); err != nil {
		t.Errorf("checkDescriptor of a valid descriptor: %v", err)
	}
}

func TestClassifyDeclared(t *testing.T) {
	for _, tc := range []struct {
		name     string
		raw      string
		declared types.MediaType
		strict   bool
		want     docKind
		bad      bool
	}{
		{"index by content", `{"schemaVersion":2,"manifests":[]}`, "", true, kindIndex, false},
		{"manifest by content", `{"schemaVersion":2,"config":{}}`, "application/json", true, kindManifest, false},
		{"same type", `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`, types.OCIImageIndex, true, kindIndex, false},
		{"index shape under manifest type", `{"schemaVersion":2,"manifests":[]}`, types.OCIManifestSchema1, false, 0, true},
		{"manifest shape under index type", `{"schemaVersion":2,"config":{}}`, types.DockerManifestList, false, 0, true},
		{"docker list under OCI index, Content-Type", `{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[]}`, types.OCIImageIndex, false, kindIndex, false},
		{"docker list under OCI index, descriptor", `{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[]}`, types.OCIImageIndex, true, 0, true},
		{"index type under manifest Content-Type", `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`, types.DockerManifestSchema2, false, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kind, _, err := classify([]byte(tc.raw), tc.declared, tc.strict)
			if tc.bad {
				if !errors.Is(err, ErrDescriptorMismatch) {
					t.Errorf("err = %v, want ErrDescriptorMismatch", err)
				}
				return
			}
			if err != nil || kind != tc.want {
				t.Errorf("classify = %v, %v; want %v", kind, err, tc.want)
			}
		})
	}
}
