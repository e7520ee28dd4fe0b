package fuzz

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/img2ext4/img2ext4/internal/tartest"
	"github.com/img2ext4/img2ext4/ocifetch"
)

// knownTypes are the manifest and index media types, the ones whose declarations
// ocifetch compares with documents.
var knownTypes = map[string]string{
	string(types.OCIManifestSchema1):    "manifest",
	string(types.DockerManifestSchema2): "manifest",
	string(types.OCIImageIndex):         "index",
	string(types.DockerManifestList):    "index",
}

// descModel is the oracle: what the OCI image spec says of a descriptor (size, digest,
// media type) and the document it points to, decided from the raw bytes and a generic JSON
// parse, without ocifetch's code.
func descModel(doc []byte, declared string, size int64, digestOK bool) (want error, decided bool) {
	switch {
	case size < 0:
		return ocifetch.ErrDescriptorMismatch, true
	case size != int64(len(doc)):
		if size > int64(len(doc)) {
			return ocifetch.ErrTruncated, true
		}
		return ocifetch.ErrSizeMismatch, true
	case !digestOK:
		return ocifetch.ErrDigestMismatch, true
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(doc, &m) != nil {
		return nil, false
	}
	var own string
	if raw, ok := m["mediaType"]; ok && json.Unmarshal(raw, &own) != nil {
		return nil, false
	}
	if raw, ok := m["schemaVersion"]; ok {
		var v int
		if json.Unmarshal(raw, &v) != nil || v == 1 {
			return nil, false
		}
	}
	if _, ok := m["fsLayers"]; ok {
		return nil, false
	}
	dk := knownTypes[declared]
	if dk == "" {
		return nil, false
	}
	if knownTypes[own] != "" && own != declared {
		return ocifetch.ErrDescriptorMismatch, true
	}
	manifests, config := m["manifests"], m["config"]
	isArray := len(manifests) > 0 && manifests[0] == '['
	isObject := len(config) > 0 && config[0] == '{'
	switch {
	case dk == "manifest" && isArray && config == nil:
		return ocifetch.ErrDescriptorMismatch, true
	case dk == "index" && isObject && manifests == nil:
		return ocifetch.ErrDescriptorMismatch, true
	}
	return nil, false
}

// FuzzDescriptors writes an OCI layout whose index.json describes one document (fuzzed
// bytes, declared media type, size off by a fuzzed amount, digest right or wrong), beside
// the blobs of a real image, and resolves it with ocifetch.Image: whenever the model
// decides, the error must be the one it names; and an image that resolves must be
// consistent with its bytes.
func FuzzDescriptors(f *testing.F) {
	p := v1.Platform{OS: "linux", Architecture: "amd64"}
	base := tartest.Image(tartest.Tar(tartest.File("f", "x")))
	base = mutate.MediaType(base, types.OCIManifestSchema1)
	cf, err := base.ConfigFile()
	if err != nil {
		f.Fatal(err)
	}
	cf.OS, cf.Architecture = p.OS, p.Architecture
	if base, err = mutate.ConfigFile(base, cf); err != nil {
		f.Fatal(err)
	}
	blobs := map[string][]byte{}
	rawManifest, _ := base.RawManifest()
	rawConfig, _ := base.RawConfigFile()
	blobs[sha(rawManifest)] = rawManifest
	blobs[sha(rawConfig)] = rawConfig
	ls, _ := base.Layers()
	for _, l := range ls {
		rc, _ := l.Compressed()
		b, _ := io.ReadAll(rc)
		rc.Close()
		blobs[sha(b)] = b
	}
	md, _ := base.Digest()
	index := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"%s","manifests":[{"mediaType":"%s","digest":"%s","size":%d,"platform":{"os":"linux","architecture":"amd64"}}]}`,
		types.OCIImageIndex, types.OCIManifestSchema1, md, len(rawManifest))
	f.Add(rawManifest, string(types.OCIManifestSchema1), int8(0), true)
	f.Add(rawManifest, string(types.OCIImageIndex), int8(0), true)
	f.Add(rawManifest, string(types.DockerManifestSchema2), int8(0), true)
	f.Add([]byte(index), string(types.OCIImageIndex), int8(0), true)
	f.Add([]byte(index), string(types.OCIManifestSchema1), int8(0), true)
	f.Add([]byte(index), string(types.OCIImageIndex), int8(-1), true)
	f.Add([]byte(index), string(types.OCIImageIndex), int8(0), false)
	f.Add([]byte(`{"schemaVersion":2,"manifests":[]}`), string(types.OCIManifestSchema1), int8(0), true)
	f.Fuzz(func(t *testing.T, doc []byte, declared string, delta int8, digestOK bool) {
		if len(doc) > 1<<16 {
			return
		}
		dir := t.TempDir()
		write := func(name string, b []byte) {
			if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		write("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
		for h, b := range blobs {
			write("blobs/sha256/"+h, b)
		}
		h := sha(doc)
		if !digestOK {
			h = sha(append([]byte("not "), doc...))
		}
		write("blobs/sha256/"+h, doc)
		size := int64(len(doc)) + int64(delta)
		desc, _ := json.Marshal(map[string]any{"mediaType": declared, "digest": "sha256:" + h, "size": size})
		write("index.json", []byte(`{"schemaVersion":2,"manifests":[`+string(desc)+`]}`))

		img, err := ocifetch.Image(context.Background(), "oci:"+dir, ocifetch.WithPlatform(p))
		want, decided := descModel(doc, declared, size, digestOK)
		if decided {
			if !errors.Is(err, want) {
				t.Fatalf("declared %q, size %d (of %d), digest ok %v: err = %v, want %v\n%s", declared, size, len(doc), digestOK, err, want, doc)
			}
			return
		}
		if err != nil {
			return
		}
		// Resolved: the manifest handed out is a real manifest of the layout, whose
		// digest is its bytes' and whose own media type, if any, is its declared one.
		raw, err := img.RawManifest()
		if err != nil {
			t.Fatal(err)
		}
		d, _ := img.Digest()
		if d.String() != "sha256:"+sha(raw) {
			t.Fatalf("digest %s, but the manifest hashes to %s", d, sha(raw))
		}
		if _, ok := blobs[sha(raw)]; !ok && sha(raw) != h {
			t.Fatalf("resolved to a manifest that is not in the layout:\n%s", raw)
		}
		var own struct {
			MediaType string `json:"mediaType"`
		}
		mt, _ := img.MediaType()
		if json.Unmarshal(raw, &own) == nil && knownTypes[own.MediaType] != "" && string(mt) != own.MediaType {
			t.Fatalf("media type %q, but the manifest says %q", mt, own.MediaType)
		}
	})
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
