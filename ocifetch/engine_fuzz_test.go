package ocifetch

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/img2ext4/img2ext4/internal/tartest"
)

// inspectModel is what the Docker Engine API (GET /images/{name}/json, ImageInspect)
// says of the inspect answer for a linux/amd64 conversion: the image ID in "Id" is
// "sha256:" and 64 hex digits, and an image of another OS cannot serve. It decides
// acceptance only for the plain "linux"/"amd64"/no-variant platform and refusal for an
// answer that is not JSON, has no such ID or names another OS and an architecture; an
// answer without an OS or architecture (an unknown platform, like a config without one:
// the config is checked after the export), architecture aliases and variants are left
// undecided.
func inspectModel(b []byte) (ok, decided bool) {
	var in struct {
		ID                        string `json:"Id"`
		Os, Architecture, Variant string
	}
	if json.Unmarshal(b, &in) != nil || !sha256Digest.MatchString(in.ID) || in.Os != "" && in.Architecture != "" && !strings.EqualFold(in.Os, "linux") {
		return false, true
	}
	if in.Os == "linux" && in.Architecture == "amd64" && in.Variant == "" {
		return true, true
	}
	return false, false
}

// exportKind reads an image export with archive/tar: "oci-archive" when it holds an OCI
// layout's index.json and oci-layout at its root (podman, and Docker 25 and later),
// "docker-archive" otherwise, "" when archive/tar cannot read it.
func exportKind(b []byte) string {
	tr := tar.NewReader(bytes.NewReader(b))
	names := map[string]bool{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return ""
		}
		names[strings.TrimPrefix(path.Clean("/"+h.Name), "/")] = true
	}
	if names["index.json"] && names["oci-layout"] {
		return "oci-archive"
	}
	return "docker-archive"
}

// imageSummary is what FuzzEngine compares of two resolved images.
func imageSummary(img v1.Image) (string, error) {
	d, err := img.Digest()
	if err != nil {
		return "", err
	}
	cfg, err := img.ConfigName()
	if err != nil {
		return "", err
	}
	s := d.String() + " " + cfg.String()
	ls, err := img.Layers()
	if err != nil {
		return "", err
	}
	for _, l := range ls {
		ld, _ := l.Digest()
		id, _ := l.DiffID()
		s += " " + ld.String() + "/" + id.String()
	}
	return s, nil
}

// FuzzEngine serves a fuzzed inspect answer and a fuzzed image export from a fake Docker
// Engine API on loopback and resolves "docker-daemon:app" from it: where inspectModel
// refuses the answer, so must Image; where it accepts it, the export is read as the
// archive it is (exportKind, by archive/tar) would be read from a file, with the same
// outcome and, when it resolves, the same manifest, config and layers.
func FuzzEngine(f *testing.F) {
	img := tartest.Image(tartest.Tar(tartest.File("f", "x")), tartest.Tar(tartest.File("g", "y")))
	cfg, _ := img.ConfigName()
	inspect := []byte(`{"Id":"` + cfg.String() + `","Os":"linux","Architecture":"amd64"}`)
	var docker bytes.Buffer
	if err := tarball.Write(name.MustParseReference("app:latest"), img, &docker); err != nil {
		f.Fatal(err)
	}
	dir := f.TempDir()
	lp, err := layout.Write(filepath.Join(dir, "layout"), empty.Index)
	if err != nil {
		f.Fatal(err)
	}
	if err := lp.AppendImage(img); err != nil {
		f.Fatal(err)
	}
	var oci bytes.Buffer
	tw := tar.NewWriter(&oci)
	root := filepath.Join(dir, "layout")
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		tw.WriteHeader(&tar.Header{Name: rel, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(b))})
		tw.Write(b)
		return nil
	})
	tw.Close()
	f.Add(inspect, docker.Bytes())
	f.Add(inspect, oci.Bytes())
	f.Add([]byte(`{"Id":"`+cfg.String()+`","Os":"linux","Architecture":"x86_64"}`), docker.Bytes())
	f.Add([]byte(`{"Id":"`+cfg.String()+`","Os":"windows","Architecture":"amd64"}`), docker.Bytes())
	f.Add([]byte(`{"Id":"sha256:1234","Os":"linux","Architecture":"amd64"}`), docker.Bytes())
	f.Add(inspect, docker.Bytes()[:len(docker.Bytes())/2])
	f.Add(inspect, []byte{})
	var exported, answer []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/images/app/json":
			w.Write(answer)
		case "/images/app/get":
			w.Write(exported)
		default:
			http.NotFound(w, r)
		}
	}))
	f.Cleanup(srv.Close)
	host := "tcp://" + srv.Listener.Addr().String()
	file := filepath.Join(dir, "export.tar")
	p := v1.Platform{OS: "linux", Architecture: "amd64"}
	f.Fuzz(func(t *testing.T, inspect, export []byte) {
		if len(export) > 1<<20 {
			return
		}
		answer, exported = inspect, export
		ctx := context.Background()
		got, err := Image(ctx, "docker-daemon:app", WithEngineHost(host), WithPlatform(p), WithTempDir(t.TempDir()))
		if got != nil {
			defer Release(got)
		}
		ok, decided := inspectModel(inspect)
		if decided && !ok {
			if err == nil {
				t.Fatalf("inspect %s: resolved, but the engine's answer is not one of a linux image with an ID", inspect)
			}
			return
		}
		kind := exportKind(export)
		if !decided || kind == "" {
			return
		}
		if err := os.WriteFile(file, export, 0o644); err != nil {
			t.Fatal(err)
		}
		want, werr := Image(ctx, kind+":"+file, WithPlatform(p), WithTempDir(t.TempDir()))
		if want != nil {
			defer Release(want)
		}
		if (err == nil) != (werr == nil) {
			t.Fatalf("export (%s, %d bytes): from the engine %v, from the file %v", kind, len(export), err, werr)
		}
		if err != nil {
			return
		}
		gs, gerr := imageSummary(got)
		ws, werr := imageSummary(want)
		if gs != ws || (gerr == nil) != (werr == nil) {
			t.Fatalf("export (%s): from the engine %s (%v), from the file %s (%v)", kind, gs, gerr, ws, werr)
		}
	})
}
