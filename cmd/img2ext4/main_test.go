package main

import (
	"bytes"
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/img2ext4/img2ext4/internal/tartest"
)

func runCLI(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = run(context.Background(), args, strings.NewReader(stdin), &o, &e)
	return code, o.String(), e.String()
}

var hello = filepath.Join("..", "..", "testdata", "hello-oci")

func TestUsage(t *testing.T) {
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--version"}, 0, "img2ext4 "},
		{[]string{"--help"}, 0, ""},
		{[]string{}, 2, "want SOURCE and OUTPUT"},
		{[]string{"a"}, 2, "want SOURCE and OUTPUT"},
		{[]string{"--format", "zip", "a", "b"}, 2, "unknown format"},
		{[]string{"--progress", "loud", "a", "b"}, 2, "unknown mode"},
		{[]string{"--platform", "linux", "a", "b"}, 2, "os/arch"},
		{[]string{"--username", "u", "a", "b"}, 2, "--password-stdin"},
		{[]string{"--password-stdin", "a", "b"}, 2, "--username"},
		{[]string{"--jobs", "0", "a", "b"}, 2, "--jobs"},
		{[]string{"a", "-"}, 2, "--format tar"},
		{[]string{"--bogus", "a", "b"}, 2, "bogus"},
		{[]string{"-q", "oci:/nonexistent/layout", filepath.Join(os.TempDir(), "never")}, 1, "img2ext4: "},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out, errOut := runCLI(t, "", tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr %s", code, tc.code, errOut)
			}
			if !strings.Contains(out+errOut, tc.want) {
				t.Errorf("output %q lacks %q", out+errOut, tc.want)
			}
		})
	}
}

func TestConvertDirAndTar(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "rootfs")
	code, _, errOut := runCLI(t, "", "--format", "dir", "--progress", "json", "oci:"+hello+":latest", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(errOut, `"phase":"apply"`) {
		t.Errorf("no JSON apply progress in %q", errOut)
	}
	b, err := os.ReadFile(filepath.Join(dir, "usr/bin/hello"))
	if err != nil || string(b) != "#!/bin/sh\necho hello again\n" {
		t.Errorf("usr/bin/hello = %q, %v", b, err)
	}
	code, out, errOut := runCLI(t, "", "-q", "--format", "tar", "oci:"+hello, "-")
	if code != 0 || errOut != "" {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "usr/bin/hi") || !strings.Contains(out, "echo hello again") {
		t.Error("tar on stdout lacks the merged files")
	}
}

func TestPasswordStdin(t *testing.T) {
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "alice" || p != "s3cret-pw" {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	ref := u.Host + "/private/img:1"
	r, _ := name.ParseReference(ref)
	img := tartest.Image(tartest.Tar(tartest.File("secret-file", "ok")))
	if err := remote.Write(r, img, remote.WithAuth(&authn.Basic{Username: "alice", Password: "s3cret-pw"})); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	t.Setenv("REGISTRY_AUTH_FILE", filepath.Join(t.TempDir(), "none.json"))

	out := filepath.Join(t.TempDir(), "r")
	if code, _, errOut := runCLI(t, "s3cret-pw\n", "-q", "--format", "dir", "--username", "alice", "--password-stdin", ref, out); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "secret-file")); string(b) != "ok" {
		t.Errorf("secret-file = %q", b)
	}
	code, _, errOut := runCLI(t, "wrong-pw\n", "-q", "--format", "dir", "--username", "alice", "--password-stdin", ref, filepath.Join(t.TempDir(), "r2"))
	if code != 1 {
		t.Fatalf("wrong password: exit %d", code)
	}
	if strings.Contains(errOut, "wrong-pw") || strings.Contains(errOut, "s3cret") {
		t.Errorf("error shows the password: %s", errOut)
	}
}
