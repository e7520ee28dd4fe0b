package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/img2ext4/img2ext4"
	"github.com/img2ext4/img2ext4/internal/tartest"
)

func TestAddAndConfigOut(t *testing.T) {
	tmp := t.TempDir()
	img := tartest.Image(tartest.Tar(tartest.Dir("usr"), tartest.Dir("usr/bin"), tartest.Symlink("bin", "usr/bin"), tartest.File("etc/hostname", "image\n")))
	img, err := mutate.Config(img, v1.Config{
		Entrypoint: []string{"/bin/app"}, Cmd: []string{"--serve"}, Env: []string{"PATH=/usr/bin", "A=b"},
		WorkingDir: "/srv", User: "1000:1000", Labels: map[string]string{"k": "v"},
		ExposedPorts: map[string]struct{}{"8080/tcp": {}, "53/udp": {}}, StopSignal: "SIGINT",
	})
	if err != nil {
		t.Fatal(err)
	}
	lay := filepath.Join(tmp, "layout")
	p, _ := layout.Write(lay, empty.Index)
	if err := p.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	agent := filepath.Join(tmp, "agent")
	os.WriteFile(agent, []byte("#!/bin/sh\n"), 0o600)
	confDir := filepath.Join(tmp, "conf.d")
	os.MkdirAll(filepath.Join(confDir, "sub"), 0o755)
	os.WriteFile(filepath.Join(confDir, "sub", "x.conf"), []byte("x=1\n"), 0o644)
	os.Symlink("sub/x.conf", filepath.Join(confDir, "link"))
	os.WriteFile(filepath.Join(tmp, "hostname"), []byte("added\n"), 0o644)

	out := filepath.Join(tmp, "rootfs")
	cfg := filepath.Join(tmp, "launch.json")
	code, _, errOut := runCLI(t, "", "-q", "--format", "dir", "--config-out", cfg,
		"--add", agent+":/bin/agent:0755",
		"--add", confDir+":/etc/app",
		"--add", filepath.Join(tmp, "hostname")+":etc/hostname",
		"oci:"+lay, out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	st, err := os.Stat(filepath.Join(out, "usr/bin/agent"))
	if err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("agent not added through the bin symlink with mode 0755: %v %v", st, err)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "etc/app/sub/x.conf")); string(b) != "x=1\n" {
		t.Errorf("x.conf = %q", b)
	}
	if l, _ := os.Readlink(filepath.Join(out, "etc/app/link")); l != "sub/x.conf" {
		t.Errorf("link = %q", l)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "etc/hostname")); string(b) != "added\n" {
		t.Errorf("hostname = %q", b)
	}
	var got img2ext4.LaunchConfig
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	want := img2ext4.LaunchConfig{Image: d.String(), Platform: "linux/amd64", Entrypoint: []string{"/bin/app"}, Cmd: []string{"--serve"},
		Env: []string{"PATH=/usr/bin", "A=b"}, WorkingDir: "/srv", User: "1000:1000", Labels: map[string]string{"k": "v"},
		ExposedPorts: []string{"53/udp", "8080/tcp"}, StopSignal: "SIGINT"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("launch config = %+v\nwant %+v", got, want)
	}

	for _, bad := range []string{"nocolon", ":dst", "src:", "a:b:999999", "a:b:rw"} {
		if code, _, _ := runCLI(t, "", "--add", bad, "oci:"+lay, filepath.Join(tmp, "x")); code != 2 {
			t.Errorf("--add %q: exit %d, want 2", bad, code)
		}
	}
	if code, _, _ := runCLI(t, "", "-q", "--format", "dir", "--add", filepath.Join(tmp, "missing")+":/x", "oci:"+lay, filepath.Join(tmp, "y")); code != 2 {
		t.Errorf("missing add source: exit %d, want 2 (found before the download)", code)
	}
	if _, err := os.Stat(filepath.Join(tmp, "y")); err == nil {
		t.Error("failed run left output behind")
	}
}

// TestAddExt4 injects a file into the default ext4 output and reads it back with debugfs.
func TestAddExt4(t *testing.T) {
	debugfs, err := exec.LookPath("debugfs")
	if err != nil {
		t.Skip("debugfs not installed")
	}
	tmp := t.TempDir()
	agent := filepath.Join(tmp, "agent")
	os.WriteFile(agent, []byte("#!/bin/sh\necho agent\n"), 0o600)
	img := filepath.Join(tmp, "rootfs.img")
	if code, _, errOut := runCLI(t, "", "-q", "--add", agent+":/usr/bin/agent:0755", "oci:"+hello, img); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	out, err := exec.Command(debugfs, "-R", "stat /usr/bin/agent", img).Output()
	if err != nil || !strings.Contains(string(out), "Mode:  0755") {
		t.Errorf("stat /usr/bin/agent: %v\n%s", err, out)
	}
	out, err = exec.Command(debugfs, "-R", "cat /usr/bin/agent", img).Output()
	if err != nil || string(out) != "#!/bin/sh\necho agent\n" {
		t.Errorf("cat /usr/bin/agent = %q, %v", out, err)
	}
}
