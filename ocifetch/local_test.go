package ocifetch

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// writeLayout writes a layout holding imgs, named by names (empty: no name).
func writeLayout(t *testing.T, dir string, imgs []v1.Image, names []string) {
	t.Helper()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	for i, img := range imgs {
		var opts []layout.Option
		if names[i] != "" {
			opts = append(opts, layout.WithAnnotations(map[string]string{annotationRefName: names[i]}))
		}
		if err := p.AppendImage(img, opts...); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLayouts(t *testing.T) {
	base := t.TempDir()
	a, b := randomImage(t, 300, 2, nil), randomImage(t, 200, 3, nil)

	named := filepath.Join(base, "named")
	writeLayout(t, named, []v1.Image{a, b}, []string{"v1", "docker.io/library/alpine:3.20"})
	single := filepath.Join(base, "single")
	writeLayout(t, single, []v1.Image{a}, []string{""})

	amd := v1.Platform{OS: "linux", Architecture: "amd64"}
	arm := v1.Platform{OS: "linux", Architecture: "arm64"}
	idx, idxImgs := multiPlatformIndex(t, amd, arm)
	multi := filepath.Join(base, "multi")
	if _, err := layout.Write(multi, idx); err != nil {
		t.Fatal(err)
	}
	nested := filepath.Join(base, "nested")
	p, err := layout.Write(nested, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{annotationRefName: "multi"})); err != nil {
		t.Fatal(err)
	}

	for _, dir := range []string{named, single, multi, nested} {
		tarDir(t, dir, dir+".tar")
	}

	tests := []struct {
		name    string
		ref     string // after the transport prefix
		want    v1.Image
		wantErr error
		errText string
		opts    []Option
	}{
		{name: "tag", ref: named + ":v1", want: a},
		{name: "containerd-style name", ref: named + ":docker.io/library/alpine:3.20", want: b},
		{name: "normalised name", ref: named + ":alpine:3.20", want: b},
		{name: "no tag several images", ref: named, errText: `"v1"`},
		{name: "missing tag", ref: named + ":v9", wantErr: ErrNotFound},
		{name: "single no tag", ref: single, want: a},
		{name: "index.json is an index", ref: multi, want: idxImgs[1], opts: []Option{WithPlatform(arm)}},
		{name: "index.json no platform", ref: multi, wantErr: ErrPlatform, opts: []Option{WithPlatform(v1.Platform{OS: "linux", Architecture: "riscv64"})}},
		{name: "nested index", ref: nested + ":multi", want: idxImgs[0], opts: []Option{WithPlatform(amd)}},
	}
	for _, tr := range []string{"oci", "oci-archive"} {
		for _, tc := range tests {
			t.Run(tr+"/"+tc.name, func(t *testing.T) {
				ref := tc.ref
				if tr == "oci-archive" {
					path, tag, _ := strings.Cut(ref, ":")
					ref = path + ".tar"
					if tag != "" {
						ref += ":" + tag
					}
				}
				img, err := Image(ctxBG, tr+":"+ref, tc.opts...)
				if tc.wantErr != nil || tc.errText != "" {
					if err == nil {
						t.Fatal("no error")
					}
					if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
						t.Fatalf("err = %v, want %v", err, tc.wantErr)
					}
					if !strings.Contains(err.Error(), tc.errText) {
						t.Fatalf("err = %v, want it to mention %s", err, tc.errText)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if got, want := mustDigest(t, img), mustDigest(t, tc.want); got != want {
					t.Fatalf("digest %s, want %s", got, want)
				}
				layers, _ := img.Layers()
				sameLayers(t, tc.want, layers)
			})
		}
	}

	t.Run("not a layout", func(t *testing.T) {
		if _, err := Image(ctxBG, "oci:"+t.TempDir()); err == nil || !strings.Contains(err.Error(), "not an OCI image layout") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestDockerArchive(t *testing.T) {
	dir := t.TempDir()
	a, b := randomImage(t, 300, 2, nil), randomImage(t, 200, 3, nil)
	ta, _ := name.NewTag("example.com/a:v1")
	tb, _ := name.NewTag("example.com/b:v2")
	multi := filepath.Join(dir, "multi.tar")
	if err := tarball.MultiRefWriteToFile(multi, map[name.Reference]v1.Image{ta: a, tb: b}); err != nil {
		t.Fatal(err)
	}
	single := filepath.Join(dir, "single.tar")
	if err := tarball.WriteToFile(single, ta, a); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, ref string
		want      v1.Image
		errText   string
	}{
		{name: "single", ref: single, want: a},
		{name: "single by tag", ref: single + ":example.com/a:v1", want: a},
		{name: "tag", ref: multi + ":example.com/b:v2", want: b},
		{name: "index", ref: multi + ":@0", want: nil},
		{name: "ambiguous", ref: multi, errText: "example.com/a:v1"},
		{name: "missing", ref: multi + ":example.com/c:v3", errText: "not found"},
		{name: "bad index", ref: multi + ":@7", errText: "not found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			img, err := Image(ctxBG, "docker-archive:"+tc.ref)
			if tc.errText != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errText) {
					t.Fatalf("err = %v, want it to mention %q", err, tc.errText)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			layers, _ := img.Layers()
			if tc.want == nil {
				return
			}
			sameLayers(t, tc.want, layers)
			wantCfg, _ := tc.want.RawConfigFile()
			gotCfg, _ := img.RawConfigFile()
			if string(wantCfg) != string(gotCfg) {
				t.Error("config differs")
			}
		})
	}
}

// writeNewDockerSave writes an archive shaped like the output of "docker save"
// since Docker 25: an OCI layout plus manifest.json, layers uncompressed.
func writeNewDockerSave(t *testing.T, file string) (layerTar []byte, diffID v1.Hash) {
	t.Helper()
	src := randomImage(t, 400, 1, nil)
	ls, _ := src.Layers()
	rc, err := ls[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	layerTar, _ = io.ReadAll(rc)
	rc.Close()
	diffID = sha256Of(layerTar)
	cfg, _ := json.Marshal(v1.ConfigFile{
		Architecture: "amd64", OS: "linux",
		RootFS: v1.RootFS{Type: "layers", DiffIDs: []v1.Hash{diffID}},
	})
	cfgDigest := sha256Of(cfg)
	m, _ := json.Marshal(v1.Manifest{
		SchemaVersion: 2, MediaType: types.OCIManifestSchema1,
		Config: v1.Descriptor{MediaType: types.OCIConfigJSON, Size: int64(len(cfg)), Digest: cfgDigest},
		Layers: []v1.Descriptor{{MediaType: types.OCIUncompressedLayer, Size: int64(len(layerTar)), Digest: diffID}},
	})
	mDigest := sha256Of(m)
	index, _ := json.Marshal(v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{{
		MediaType: types.OCIManifestSchema1, Size: int64(len(m)), Digest: mDigest,
		Annotations: map[string]string{annotationContainerdName: "example.com/new:1", annotationRefName: "1"},
	}}})
	dm, _ := json.Marshal([]dockerManifestEntry{{
		Config: "blobs/sha256/" + cfgDigest.Hex, RepoTags: []string{"example.com/new:1"},
		Layers: []string{"blobs/sha256/" + diffID.Hex},
	}})
	files := map[string][]byte{
		"blobs/sha256/" + diffID.Hex:    layerTar,
		"blobs/sha256/" + cfgDigest.Hex: cfg,
		"blobs/sha256/" + mDigest.Hex:   m,
		"index.json":                    index,
		"manifest.json":                 dm,
		"oci-layout":                    []byte(`{"imageLayoutVersion":"1.0.0"}`),
	}
	tarFiles(t, file, []string{"blobs/sha256/" + diffID.Hex, "blobs/sha256/" + cfgDigest.Hex, "blobs/sha256/" + mDigest.Hex, "index.json", "manifest.json", "oci-layout"}, files)
	return layerTar, diffID
}

func TestNewDockerSave(t *testing.T) {
	file := filepath.Join(t.TempDir(), "save.tar")
	layerTar, diffID := writeNewDockerSave(t, file)
	for _, ref := range []string{"docker-archive:" + file, "docker-archive:" + file + ":example.com/new:1", "oci-archive:" + file, "oci-archive:" + file + ":example.com/new:1", "oci-archive:" + file + ":1"} {
		t.Run(ref, func(t *testing.T) {
			img, err := Image(ctxBG, ref, WithPlatform(v1.Platform{OS: "linux", Architecture: "amd64"}))
			if err != nil {
				t.Fatal(err)
			}
			layers, _ := img.Layers()
			if len(layers) != 1 {
				t.Fatalf("%d layers", len(layers))
			}
			if d := mustDigest(t, layers[0]); d != diffID {
				t.Errorf("digest %s, want %s", d, diffID)
			}
			if mt, _ := layers[0].MediaType(); mt != types.OCIUncompressedLayer {
				t.Errorf("media type %s", mt)
			}
			got := readLayers(t, layers)[0]
			if string(got) != string(layerTar) {
				t.Error("layer bytes differ")
			}
		})
	}
}

// blobDigestOf returns the digest of the first layer of img.
func firstLayer(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	return mustDigest(t, ls[0])
}

// readFirstLayer reads the first layer of ref to EOF and returns the error.
func readFirstLayer(t *testing.T, ref string) error {
	t.Helper()
	img, err := Image(ctxBG, ref)
	if err != nil {
		t.Fatalf("Image: %v", err)
	}
	ls, _ := img.Layers()
	rc, err := ls[0].Compressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = io.Copy(io.Discard, rc)
	return err
}

// mangleBlob serves the blob with the given digest through fn.
func mangleBlob(d v1.Hash, fn func([]byte) []byte, declareFull bool) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/blobs/"+d.String()) {
				h.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			body := rec.Body.Bytes()
			n := len(body)
			body = fn(body)
			if !declareFull {
				n = len(body)
			}
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.Header().Set("Content-Length", strconv.Itoa(n))
			w.WriteHeader(rec.Code)
			w.Write(body)
		})
	}
}

func TestCorruptBlobs(t *testing.T) {
	isolateCredentials(t)
	img := randomImage(t, 2048, 2, nil)
	d := firstLayer(t, img)
	flip := func(b []byte) []byte { b = append([]byte(nil), b...); b[len(b)/2] ^= 0xff; return b }
	half := func(b []byte) []byte { return b[:len(b)/2] }

	t.Run("registry flipped byte", func(t *testing.T) {
		_, host := newRegistry(t, mangleBlob(d, flip, false))
		push(t, host+"/c:1", img)
		err := readFirstLayer(t, host+"/c:1")
		var de *DigestError
		if !errors.As(err, &de) || !errors.Is(err, ErrDigestMismatch) || de.Digest != d {
			t.Fatalf("err = %v, want *DigestError for %s", err, d)
		}
	})
	t.Run("registry truncated stream", func(t *testing.T) {
		_, host := newRegistry(t, mangleBlob(d, half, true))
		push(t, host+"/c:1", img)
		err := readFirstLayer(t, host+"/c:1")
		var se *SizeError
		if !errors.As(err, &se) || !errors.Is(err, ErrTruncated) {
			t.Fatalf("err = %v, want *SizeError (truncated)", err)
		}
	})
	t.Run("registry short blob", func(t *testing.T) {
		_, host := newRegistry(t, mangleBlob(d, half, false))
		push(t, host+"/c:1", img)
		if err := readFirstLayer(t, host+"/c:1"); !errors.Is(err, ErrTruncated) {
			t.Fatalf("err = %v, want ErrTruncated", err)
		}
	})
	t.Run("registry long blob", func(t *testing.T) {
		_, host := newRegistry(t, mangleBlob(d, func(b []byte) []byte { return append(b, 0) }, false))
		push(t, host+"/c:1", img)
		if err := readFirstLayer(t, host+"/c:1"); !errors.Is(err, ErrSizeMismatch) {
			t.Fatalf("err = %v, want ErrSizeMismatch", err)
		}
	})

	for _, tc := range []struct {
		name string
		fn   func([]byte) []byte
		want error
	}{{"flipped", flip, ErrDigestMismatch}, {"truncated", half, ErrTruncated}} {
		t.Run("layout "+tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeLayout(t, dir, []v1.Image{img}, []string{"x"})
			blob := filepath.Join(dir, "blobs", d.Algorithm, d.Hex)
			b, err := os.ReadFile(blob)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(blob, tc.fn(b), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := readFirstLayer(t, "oci:"+dir+":x"); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}

	t.Run("corrupt config", func(t *testing.T) {
		cd, _ := img.ConfigName()
		_, host := newRegistry(t, mangleBlob(cd, flip, false))
		push(t, host+"/c:1", img)
		if _, err := Image(ctxBG, host+"/c:1"); !errors.Is(err, ErrDigestMismatch) {
			t.Fatalf("err = %v, want ErrDigestMismatch", err)
		}
	})
}

func TestCompressedArchives(t *testing.T) {
	dir := t.TempDir()
	img := randomImage(t, 300, 2, nil)
	tag, _ := name.NewTag("example.com/a:v1")
	plain := filepath.Join(dir, "save.tar")
	if err := tarball.WriteToFile(plain, tag, img); err != nil {
		t.Fatal(err)
	}
	lay := filepath.Join(dir, "layout")
	writeLayout(t, lay, []v1.Image{img}, []string{"v1"})
	tarDir(t, lay, lay+".tar")

	compressors := map[string]func(io.Writer) io.WriteCloser{
		"gzip": func(w io.Writer) io.WriteCloser { return gzip.NewWriter(w) },
		"zstd": func(w io.Writer) io.WriteCloser {
			zw, err := zstd.NewWriter(w)
			if err != nil {
				t.Fatal(err)
			}
			return zw
		},
	}
	for cname, newW := range compressors {
		for _, tc := range []struct{ transport, src string }{{"docker-archive", plain}, {"oci-archive", lay + ".tar"}} {
			t.Run(cname+"/"+tc.transport, func(t *testing.T) {
				b, err := os.ReadFile(tc.src)
				if err != nil {
					t.Fatal(err)
				}
				out := filepath.Join(t.TempDir(), "archive."+cname)
				f, err := os.Create(out)
				if err != nil {
					t.Fatal(err)
				}
				zw := newW(f)
				zw.Write(b)
				if err := zw.Close(); err != nil {
					t.Fatal(err)
				}
				f.Close()
				tmp := t.TempDir()
				got, err := Image(ctxBG, tc.transport+":"+out, WithTempDir(tmp))
				if err != nil {
					t.Fatal(err)
				}
				layers, _ := got.Layers()
				sameLayers(t, img, layers)
				if left := dirEntries(t, tmp); len(left) != 0 {
					t.Errorf("decompressed copy left in temp dir: %v", left)
				}
			})
		}
	}
}

// TestLegacyDockerSave reads an archive shaped like "docker save" before
// Docker 25: <id>/layer.tar uncompressed layers, a repeated layer stored as a
// symbolic link to the first copy, and a <hex>.json config.
func TestLegacyDockerSave(t *testing.T) {
	var layers [][]byte
	for range 2 {
		l := randomImage(t, 500, 1, nil)
		ls, _ := l.Layers()
		rc, err := ls[0].Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		layers = append(layers, b)
	}
	diffIDs := []v1.Hash{sha256Of(layers[0]), sha256Of(layers[0]), sha256Of(layers[1])}
	cfg, _ := json.Marshal(v1.ConfigFile{Architecture: "amd64", OS: "linux", RootFS: v1.RootFS{Type: "layers", DiffIDs: diffIDs}})
	cfgName := sha256Of(cfg).Hex + ".json"
	dm, _ := json.Marshal([]dockerManifestEntry{{
		Config: cfgName, RepoTags: []string{"legacy:1"},
		Layers: []string{"id1/layer.tar", "id2/layer.tar", "id3/layer.tar"},
	}})

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	reg := func(n string, b []byte) {
		tw.WriteHeader(&tar.Header{Name: n, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(b))})
		tw.Write(b)
	}
	for _, d := range []string{"id1/", "id2/", "id3/"} {
		tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755})
	}
	reg("id1/layer.tar", layers[0])
	tw.WriteHeader(&tar.Header{Name: "id2/layer.tar", Typeflag: tar.TypeSymlink, Linkname: "../id1/layer.tar"})
	reg("id3/layer.tar", layers[1])
	reg(cfgName, cfg)
	reg("manifest.json", dm)
	reg("repositories", []byte(`{"legacy":{"1":"id3"}}`))
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "legacy.tar")
	if err := os.WriteFile(file, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	img, err := Image(ctxBG, "docker-archive:"+file+":legacy:1", WithPlatform(v1.Platform{OS: "linux", Architecture: "amd64"}))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := img.Layers()
	bodies := readLayers(t, got)
	for i, want := range [][]byte{layers[0], layers[0], layers[1]} {
		if !bytes.Equal(bodies[i], want) {
			t.Errorf("layer %d: bytes differ", i)
		}
		if d := mustDigest(t, got[i]); d != diffIDs[i] {
			t.Errorf("layer %d: digest %s, want diff_id %s", i, d, diffIDs[i])
		}
	}
	if _, err := Image(ctxBG, "docker-archive:"+file, WithPlatform(v1.Platform{OS: "linux", Architecture: "arm64"})); !errors.Is(err, ErrPlatform) {
		t.Errorf("platform mismatch: err = %v, want ErrPlatform", err)
	}
}
