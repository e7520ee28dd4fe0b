package ocifetch

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/img2ext4/img2ext4/internal/tartest"
	"github.com/img2ext4/img2ext4/layerstream"
)

// archiveModel is the oracle of FuzzDockerArchive, written from what "docker save"
// writes and "docker load" reads (moby's image/tarexport): manifest.json is a JSON array
// of {Config, RepoTags, Layers}, whose paths name files of the archive relative to its
// root, ".." not leaving it (moby's safePath). The image named ref is the only one (ref
// ""), the N-th ("@N"), or the first whose RepoTags hold ref or a name equal to it once
// both are normalised as Docker references. It resolves when its Config names the config
// file and it lists one existing layer per diff_id of that config. It returns the
// archive files the layers name, or ok false.
func archiveModel(manifest []byte, ref string, files map[string][]byte, config string, diffIDs int) (layers []string, ok bool) {
	var items []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if json.Unmarshal(manifest, &items) != nil {
		return nil, false
	}
	inArchive := func(p string) string { return strings.TrimPrefix(path.Clean("/"+p), "/") }
	pick := -1
	switch {
	case ref == "":
		if len(items) == 1 {
			pick = 0
		}
	case ref[0] == '@':
		if n, err := strconv.Atoi(ref[1:]); err == nil && n >= 0 && n < len(items) {
			pick = n
		}
	default:
		r, rerr := name.ParseReference(ref)
	find:
		for i, it := range items {
			for _, tag := range it.RepoTags {
				if tag == ref {
					pick = i
					break find
				}
				if t, err := name.ParseReference(tag); err == nil && rerr == nil && t.Name() == r.Name() {
					pick = i
					break find
				}
			}
		}
	}
	if pick < 0 || inArchive(items[pick].Config) != config || len(items[pick].Layers) != diffIDs {
		return nil, false
	}
	for _, l := range items[pick].Layers {
		if _, ok := files[inArchive(l)]; !ok {
			return nil, false
		}
		layers = append(layers, inArchive(l))
	}
	return layers, true
}

// FuzzDockerArchive writes a docker-archive with a fuzzed manifest.json beside a config,
// an uncompressed layer and a gzip layer (once under blobs/sha256/ and once elsewhere)
// and opens it with ocifetch.Image("docker-archive:FILE:REF"): it resolves iff
// archiveModel says so, and then each layer, read as the applier reads it (a
// layerstream.Stream checking the config's diff_id), gives the uncompressed tar of the
// file the model names when that tar's digest is the diff_id, and fails otherwise (a
// layer the manifest names wrong is refused, not converted).
func FuzzDockerArchive(f *testing.F) {
	layer1 := tartest.Tar(tartest.File("a", "one"))
	layer2 := tartest.Tar(tartest.File("b", "two"))
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(layer2)
	zw.Close()
	d1, d2 := sha256Of(layer1), sha256Of(layer2)
	cfg := fmt.Sprintf(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[%q,%q]}}`, d1, d2)
	gzPath := "blobs/sha256/" + sha256Of(gz.Bytes()).Hex
	files := map[string][]byte{"cfg.json": []byte(cfg), "l1/layer.tar": layer1, gzPath: gz.Bytes(), "l2.tar.gz": gz.Bytes()}
	plain := map[string][]byte{"cfg.json": nil, "l1/layer.tar": layer1, gzPath: layer2, "l2.tar.gz": layer2}
	good := fmt.Sprintf(`[{"Config":"cfg.json","RepoTags":["example.com/app:v1"],"Layers":["l1/layer.tar",%q]}]`, gzPath)
	two := fmt.Sprintf(`[{"Config":"cfg.json","RepoTags":["alpine:3"],"Layers":["l1/layer.tar","l2.tar.gz"]},{"Config":"./cfg.json","RepoTags":null,"Layers":["/l1/../l1/layer.tar",%q]}]`, gzPath)
	f.Add([]byte(good), "")
	f.Add([]byte(good), "example.com/app:v1")
	f.Add([]byte(good), "example.com/app")
	f.Add([]byte(good), "@0")
	f.Add([]byte(two), "docker.io/library/alpine:3")
	f.Add([]byte(two), "@1")
	f.Add([]byte(two), "@+1")
	f.Add([]byte(two), "")
	f.Add([]byte(`[{"Config":"cfg.json","Layers":["l2.tar.gz","l1/layer.tar"]}]`), "")
	f.Add([]byte(`[{"Config":"l1/layer.tar","Layers":["l2.tar.gz","l1/layer.tar"]}]`), "")
	f.Add([]byte(`[{"Config":"../cfg.json","Layers":["cfg.json","../../l2.tar.gz"]}]`), "")
	f.Add([]byte(`{}`), "")
	dir := f.TempDir()
	file := filepath.Join(dir, "a.tar")
	p := v1.Platform{OS: "linux", Architecture: "amd64"}
	f.Fuzz(func(t *testing.T, manifest []byte, ref string) {
		if len(manifest) > 1<<16 || strings.ContainsAny(ref, "\x00") {
			return
		}
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, n := range []string{"cfg.json", "l1/layer.tar", gzPath, "l2.tar.gz"} {
			tw.WriteHeader(&tar.Header{Name: n, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(files[n]))})
			tw.Write(files[n])
		}
		tw.WriteHeader(&tar.Header{Name: "manifest.json", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(manifest))})
		tw.Write(manifest)
		tw.Close()
		if err := os.WriteFile(file, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		img, err := Image(ctx, "docker-archive:"+file+":"+ref, WithPlatform(p), WithTempDir(t.TempDir()))
		if img != nil {
			defer Release(img)
		}
		names, ok := archiveModel(manifest, ref, files, "cfg.json", 2)
		if ok != (err == nil) {
			t.Fatalf("manifest.json %s, ref %q: model resolves %v, Image: %v", manifest, ref, ok, err)
		}
		if !ok {
			return
		}
		if raw, err := img.RawConfigFile(); err != nil || !bytes.Equal(raw, []byte(cfg)) {
			t.Fatalf("config %s, %v", raw, err)
		}
		ls, err := img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		for i, l := range ls {
			want := plain[names[i]]
			match := sha256Of(want) == []v1.Hash{d1, d2}[i]
			rc, err := layerstream.Open(ctx, l, []v1.Hash{d1, d2}[i])
			var got []byte
			if err == nil {
				got, err = io.ReadAll(rc)
				if cerr := rc.Close(); err == nil {
					err = cerr
				}
			}
			if match != (err == nil) || match && !bytes.Equal(got, want) {
				t.Fatalf("manifest.json %s: layer %d (%s): diff_id matches %v, read %d bytes, %v", manifest, i, names[i], match, len(got), err)
			}
		}
	})
}
