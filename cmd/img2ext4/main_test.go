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
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
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
	out := filepath.Join(t.TempDir(), "out")
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{}, 2, "want SOURCE and OUTPUT"},
		{[]string{"a"}, 2, "want SOURCE and OUTPUT"},
		{[]string{"--format", "zip", "a", "b"}, 2, "unknown format"},
		{[]string{"--progress", "loud", "a", "b"}, 2, "unknown mode"},
		{[]string{"--platform", "linux", "a", "b"}, 2, "os/arch"},
		{[]string{"--username", "u", "a", "b"}, 2, "--password-stdin"},
		{[]string{"--password-stdin", "a", "b"}, 2, "--username"},
		{[]string{"--jobs", "0", "a", "b"}, 2, "--jobs 0"},
		{[]string{"--jobs", "65", "a", "b"}, 2, "--jobs 65"},
		{[]string{"a", "-"}, 2, "--format tar"},
		{[]string{"--bogus", "a", "b"}, 2, "bogus"},
		// Malformed references and an empty output path are usage errors.
		{[]string{"Not/A:Valid:Ref", out}, 2, "parse reference"},
		{[]string{"oci:", out}, 2, "missing path"},
		{[]string{"--exporter", "native", "containers-storage:alpine", out}, 2, "unsupported transport"},
		{[]string{"--exporter", "podman", "a", out}, 2, "--exporter \"podman\""},
		{[]string{"docker-daemon:Not/A:Valid", out}, 2, "docker-daemon:NAME"},
		{[]string{"http://hostonly", out}, 2, "host/repository"},
		{[]string{"oci:" + hello, ""}, 2, "empty OUTPUT"},
		// Bad flag values.
		{[]string{"--size", "big", "a", "b"}, 2, "bad size"},
		{[]string{"--free", "200x", "a", "b"}, 2, "bad size"},
		{[]string{"--free", "-5%", "a", "b"}, 2, "bad percentage"},
		{[]string{"--align", "0", "a", "b"}, 2, "--align 0: want a power of two of at least 4K"},
		{[]string{"--align", "3M", "a", "b"}, 2, "--align 3M:"},
		{[]string{"--align", "2048", "a", "b"}, 2, "--align 2K:"},
		{[]string{"--label", "a-label-longer-than-16", "a", "b"}, 2, "longer than 16 bytes"},
		{[]string{"--uuid", "xyz", "a", "b"}, 2, "bad UUID"},
		{[]string{"--size", "1G", "--free", "10%", "a", "b"}, 2, "exclude each other"},
		{[]string{"--add", "nodst", "a", "b"}, 2, "SRC:DST[:MODE]"},
		// Options that do not apply to the chosen format.
		{[]string{"--format", "dir", "--size", "1G", "a", "b"}, 2, "--size only apply to --format ext4, not dir"},
		{[]string{"--format", "tar", "--free", "10%", "--inodes", "9", "a", "b"}, 2, "--free, --inodes only apply to --format ext4, not tar"},
		{[]string{"--format", "tar", "--label", "x", "a", "-"}, 2, "--label only apply"},
		{[]string{"--format", "dir", "--align", "4K", "a", "b"}, 2, "--align only apply"},
		{[]string{"--format", "dir", "--no-journal", "a", "b"}, 2, "--no-journal only apply"},
		// A failure that is not a usage error.
		{[]string{"-q", "oci:/nonexistent/layout", filepath.Join(os.TempDir(), "never")}, 1, "img2ext4: "},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, stdout, errOut := runCLI(t, "", tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr %s", code, tc.code, errOut)
			}
			if !strings.Contains(errOut, tc.want) {
				t.Errorf("stderr %q lacks %q", errOut, tc.want)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
			if !strings.HasPrefix(errOut, "img2ext4: ") || strings.Count(errOut, "img2ext4: ") > 1 || strings.Count(errOut, "ocifetch: ") > 1 {
				t.Errorf("stderr %q: want one img2ext4: prefix, and a package's at most once", errOut)
			}
			if tc.code == 2 && !strings.Contains(errOut, "img2ext4 --help") {
				t.Errorf("usage error %q does not point to --help", errOut)
			}
			if _, err := os.Stat(out); err == nil {
				t.Errorf("%s was written", out)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	for _, arg := range []string{"--help", "-h"} {
		t.Run(arg, func(t *testing.T) {
			code, out, errOut := runCLI(t, "", arg, "--size", "1G")
			if code != 0 || errOut != "" {
				t.Fatalf("exit %d, stderr %q", code, errOut)
			}
			for _, want := range []string{"Usage:\n  img2ext4 [flags] SOURCE OUTPUT", "Examples:\n", "oci:DIR[:TAG]",
				"--allow-platform-mismatch", "--align SIZE", "(default 2M)", "--format FORMAT", "(default ext4)",
				"ext4 output (--format ext4 only):", "Exit status:", "130", "143"} {
				if !strings.Contains(out, want) {
					t.Errorf("help lacks %q", want)
				}
			}
			// Sizes as users type them; no pflag bool noise.
			for _, bad := range []string{"2097152", "[=true|false]", "ext4: "} {
				if strings.Contains(out, bad) {
					t.Errorf("help holds %q", bad)
				}
			}
			for _, line := range strings.Split(out, "\n") {
				if len(line) > helpWidth {
					t.Errorf("help line wider than %d columns: %q", helpWidth, line)
				}
			}
			// Every ext4-only flag is listed in the ext4 group, and only there.
			_, ext4Group, _ := strings.Cut(out, "ext4 output (--format ext4 only):")
			for _, f := range []string{"--size", "--free", "--inodes", "--label", "--uuid", "--no-journal", "--read-only"} {
				if !strings.Contains(ext4Group, "      "+f+" ") {
					t.Errorf("%s not in the ext4 group", f)
				}
			}
		})
	}
}

func TestVersion(t *testing.T) {
	code, out, errOut := runCLI(t, "", "--version")
	if code != 0 || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	if !strings.HasPrefix(out, "img2ext4 ") || !strings.Contains(out, "go:      go1.") {
		t.Errorf("version %q lacks the version line or the Go version", out)
	}
	// Without a version or VCS stamps (this test binary, -buildvcs=false, a worktree) the
	// executable's digest tells builds apart, not a bare "(devel)".
	if strings.Contains(out, "(devel)") || !strings.Contains(out, "commit:  ") && !strings.Contains(out, "executable sha256:") {
		t.Errorf("version %q names neither a commit nor the executable's digest", out)
	}
}

// TestVersionCommit builds the binary inside the git checkout, as a user who clones
// and runs "go build" does: --version names the commit it came from.
func TestVersionCommit(t *testing.T) {
	gitBin, err := exec.LookPath("git")
	if err != nil {
		t.Skip("git not found: the build records no commit without it")
	}
	head, err := exec.Command(gitBin, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skip("not in a git checkout git can read: the build records no commit")
	}
	top, err := exec.Command(gitBin, "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(strings.TrimSpace(string(top)), ".git")); err != nil || !st.IsDir() {
		t.Skip("a git worktree (.git is a file): go build records no commit there")
	}
	bin := buildBinary(t)
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "commit:  "+strings.TrimSpace(string(head))) {
		t.Errorf("--version %q does not name commit %s", out, head)
	}
	if strings.Contains(string(out), "(devel)") {
		t.Errorf("--version %q: a git build has a version", out)
	}
}

// TestPlatformMismatch: a single-platform image for another platform is refused with a
// hint naming the flag that accepts it, and that flag converts it; an index lacking the
// platform names the platforms it offers.
func TestPlatformMismatch(t *testing.T) {
	lay := filepath.Join(t.TempDir(), "layout")
	p, _ := layout.Write(lay, empty.Index)
	if err := p.AppendImage(tartest.Image(tartest.Tar(tartest.File("f", "x")))); err != nil { // linux/amd64
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "rootfs")
	code, _, errOut := runCLI(t, "", "-q", "--format", "dir", "--platform", "linux/s390x", "oci:"+lay, out)
	if code != 1 || !strings.Contains(errOut, "linux/amd64, not linux/s390x") || !strings.Contains(errOut, "--allow-platform-mismatch") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if strings.Contains(errOut, "WithAllowPlatformMismatch") {
		t.Errorf("the error names a Go option: %s", errOut)
	}
	if code, _, errOut := runCLI(t, "", "-q", "--format", "dir", "--platform", "linux/s390x", "--allow-platform-mismatch", "oci:"+lay, out); code != 0 {
		t.Fatalf("with --allow-platform-mismatch: exit %d: %s", code, errOut)
	}
	if b, err := os.ReadFile(filepath.Join(out, "f")); err != nil || string(b) != "x" {
		t.Errorf("f = %q, %v", b, err)
	}
	code, _, errOut = runCLI(t, "", "-q", "--format", "dir", "--platform", "linux/s390x", "oci:"+hello, filepath.Join(t.TempDir(), "r"))
	if code != 1 || !strings.Contains(errOut, "linux/amd64, linux/arm64/v8") || !strings.Contains(errOut, "--platform") {
		t.Errorf("index without the platform: exit %d: %s", code, errOut)
	}
}

// TestHelloArm64 converts the shipped image as an arm64 host would (README's first command).
func TestHelloArm64(t *testing.T) {
	out := filepath.Join(t.TempDir(), "hello.img")
	code, _, errOut := runCLI(t, "", "--progress", "none", "--platform", "linux/arm64", "oci:"+hello+":latest", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if st, err := os.Stat(out); err != nil || st.Size() == 0 {
		t.Fatalf("no image: %v", err)
	}
	if !strings.Contains(errOut, "linux/arm64/v8, 3 layers") {
		t.Errorf("summary %q does not name the arm64 image", errOut)
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
