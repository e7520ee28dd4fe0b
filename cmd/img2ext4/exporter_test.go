package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestExporterFlag: --exporter reaches the conversion. With no programs on PATH, a
// containers-storage: source names the Debian package that provides skopeo, whether
// skopeo was asked for or chosen by auto; native refuses it as a usage error; and a
// docker-daemon: source whose engine socket does not exist fails naming the socket.
func TestExporterFlag(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("PATH", tmp) // no skopeo, no docker
	sock := filepath.Join(tmp, "engine.sock")
	t.Setenv("DOCKER_HOST", "unix://"+sock)
	out := filepath.Join(tmp, "out.img")
	for _, tc := range []struct {
		args []string
		code int
		want []string
	}{
		{[]string{"--exporter", "skopeo", "containers-storage:alpine"}, 1, []string{"install the Debian package skopeo"}},
		{[]string{"containers-storage:alpine"}, 1, []string{"install the Debian package skopeo"}},
		{[]string{"--exporter", "docker", "docker-daemon:alpine"}, 1, []string{"install the Debian package docker.io"}},
		{[]string{"--exporter", "native", "containers-storage:alpine"}, 2, []string{"unsupported transport", "--exporter auto or skopeo"}},
		{[]string{"docker-daemon:alpine"}, 1, []string{"not reachable", sock, "start the engine"}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, _, stderr := runCLI(t, "", append(append([]string{"-q"}, tc.args...), out)...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr %s", code, tc.code, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr %q lacks %q", stderr, w)
				}
			}
		})
	}
}
