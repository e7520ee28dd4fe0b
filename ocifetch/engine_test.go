package ocifetch

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
)

// TestEngineUnreachable: a "docker-daemon:" reference whose engine is not running fails with
// ErrEngineUnreachable, naming the endpoint and saying what to do, for a socket that does not
// exist, a socket nobody listens on any more, and a loopback port nobody listens on.
func TestEngineUnreachable(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "stale.sock")
	l, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close() // the socket file stays; connecting to it is refused
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := tl.Addr().String()
	tl.Close()

	for _, tc := range []struct{ name, host string }{
		{"missing socket", "unix://" + filepath.Join(dir, "missing.sock")},
		{"stale socket", "unix://" + stale},
		{"closed port", "tcp://" + closedPort},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Image(context.Background(), "docker-daemon:alpine:latest", WithEngineHost(tc.host))
			if !errors.Is(err, ErrEngineUnreachable) {
				t.Fatalf("err = %v, want ErrEngineUnreachable", err)
			}
			for _, want := range []string{tc.host, "start the engine", "DOCKER_HOST"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
		})
	}
}

// TestEngineHost: DOCKER_HOST is the default endpoint, WithEngineHost wins over it, and
// endpoints other than unix:// and tcp:// are refused.
func TestEngineHost(t *testing.T) {
	t.Setenv("DOCKER_HOST", "")
	if s, err := SettingsOf(); err != nil || s.EngineHost != DefaultEngineHost {
		t.Errorf("no DOCKER_HOST: %q, %v; want %q", s.EngineHost, err, DefaultEngineHost)
	}
	t.Setenv("DOCKER_HOST", "unix:///run/podman/podman.sock")
	if s, err := SettingsOf(); err != nil || s.EngineHost != "unix:///run/podman/podman.sock" {
		t.Errorf("DOCKER_HOST: %q, %v", s.EngineHost, err)
	}
	if s, err := SettingsOf(WithEngineHost("tcp://127.0.0.1:2375")); err != nil || s.EngineHost != "tcp://127.0.0.1:2375" {
		t.Errorf("WithEngineHost: %q, %v", s.EngineHost, err)
	}
	for _, bad := range []string{"/var/run/docker.sock", "unix://", "tcp://127.0.0.1", "ssh://user@host", "npipe:////./pipe/docker_engine", "tcp://127.0.0.1:2375/path"} {
		if _, err := SettingsOf(WithEngineHost(bad)); err == nil {
			t.Errorf("WithEngineHost(%q) accepted", bad)
		}
	}
}
