package exporter_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/img2ext4/img2ext4/exporter"
	"github.com/img2ext4/img2ext4/internal/tartest"
	"github.com/img2ext4/img2ext4/ocifetch"
)

// TestSkopeoBasicAuth reads an image through skopeo from a loopback registry that
// requires basic auth (go-containerregistry's, behind a handler checking the
// credentials). WithBasicAuth's credentials reach skopeo in a 0600 file that is gone once
// skopeo exits, never on its command line; without them or with wrong ones skopeo is
// refused. skopeo runs through a wrapper script that records its arguments and the
// file's mode, then runs the real skopeo.
func TestSkopeoBasicAuth(t *testing.T) {
	skopeo, err := exec.LookPath("skopeo")
	if err != nil {
		t.Skip("skopeo not installed (Debian package skopeo)")
	}
	const user, pass = "builder", "s3cret-pass-word"
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != user || p != pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="img2ext4 test"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	ref := u.Host + "/test/private:1"
	img := tartest.Image(tartest.Tar(tartest.File("secret", "behind basic auth")))
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, remote.WithAuth(&authn.Basic{Username: user, Password: pass})); err != nil {
		t.Fatal(err)
	}
	wantCfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}

	// No credentials of the host's may help.
	t.Setenv("REGISTRY_AUTH_FILE", filepath.Join(t.TempDir(), "none.json"))
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	t.Setenv("HOME", t.TempDir())
	bin, log := t.TempDir(), t.TempDir()
	wrapper := fmt.Sprintf(`#!/bin/sh
printf '%%s\n' "$@" > %[1]s/argv
prev=
for a; do
	if [ "$prev" = --src-authfile ]; then stat -c %%a "$a" > %[1]s/mode; echo "$a" > %[1]s/authfile; fi
	prev=$a
done
exec %[2]s "$@"
`, log, skopeo)
	if err := os.WriteFile(filepath.Join(bin, "skopeo"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))

	for _, tc := range []struct {
		name string
		opts []ocifetch.Option
		ok   bool
	}{
		{name: "credentials", opts: []ocifetch.Option{ocifetch.WithBasicAuth(user, pass)}, ok: true},
		{name: "none", ok: false},
		{name: "wrong password", opts: []ocifetch.Option{ocifetch.WithBasicAuth(user, "not-"+pass)}, ok: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, f := range []string{"argv", "mode", "authfile"} {
				os.Remove(filepath.Join(log, f))
			}
			opts := append([]ocifetch.Option{ocifetch.WithTempDir(t.TempDir())}, tc.opts...)
			got, release, err := exporter.Image(context.Background(), ref, exporter.Skopeo, opts...)
			defer release()
			argv, rerr := os.ReadFile(filepath.Join(log, "argv"))
			if rerr != nil {
				t.Fatalf("skopeo did not run: %v (%v)", rerr, err)
			}
			if strings.Contains(string(argv), pass) {
				t.Errorf("the password is on skopeo's command line:\n%s", argv)
			}
			if err != nil && strings.Contains(err.Error(), pass) {
				t.Errorf("the error shows the password: %v", err)
			}
			if !tc.ok {
				if err == nil {
					t.Fatal("skopeo read the image without the right credentials")
				}
				t.Logf("refused as it should be: %v", err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// skopeo writes OCI media types, so compare the layers' contents, not digests.
			cfg, err := got.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(cfg.RootFS.DiffIDs) != fmt.Sprint(wantCfg.RootFS.DiffIDs) {
				t.Errorf("read layers %v, want %v", cfg.RootFS.DiffIDs, wantCfg.RootFS.DiffIDs)
			}
			mode, _ := os.ReadFile(filepath.Join(log, "mode"))
			if strings.TrimSpace(string(mode)) != "600" {
				t.Errorf("skopeo's auth file had mode %q, want 600 (argv:\n%s)", mode, argv)
			}
			auth, _ := os.ReadFile(filepath.Join(log, "authfile"))
			if _, err := os.Stat(strings.TrimSpace(string(auth))); !os.IsNotExist(err) {
				t.Errorf("the auth file %s is still there after skopeo exited: %v", auth, err)
			}
		})
	}
}
