package exporter_test

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// podman is a podman API service started by a test, on a store of its own in a
// temporary directory, isolated from the host's images.
type podman struct {
	dir   string   // root of the temporary store
	flags []string // global flags selecting that store
	sock  string   // the API socket
	host  string   // unix://sock
	cmd   *exec.Cmd
}

// storeSpec is the containers-storage store specification of the test's store, as skopeo
// takes it in "containers-storage:[SPEC]IMAGE".
func (p *podman) storeSpec() string {
	return "[vfs@" + filepath.Join(p.dir, "root") + "+" + filepath.Join(p.dir, "runroot") + "]"
}

// run runs a podman command on the test's store.
func (p *podman) run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("podman", append(append([]string{}, p.flags...), args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// stop kills the service, as a crash or an administrator would, and leaves its socket file
// behind.
func (p *podman) stop() {
	if p.cmd == nil {
		return
	}
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL) // the service's process group: it and its children
	p.cmd.Wait()
	p.cmd = nil
}

// startPodman starts "podman system service" on a new store, or skips the test, before any
// other work, when podman is missing or cannot run here. The service is killed when the
// test ends, however it ends.
func startPodman(t *testing.T) *podman {
	t.Helper()
	if _, err := exec.LookPath("podman"); err != nil {
		t.Skip("podman not installed (Debian package podman): the engine this test reads images from")
	}
	dir := t.TempDir()
	p := &podman{dir: dir, sock: filepath.Join(dir, "podman.sock")}
	p.host = "unix://" + p.sock
	// vfs needs no kernel overlay support and no fuse; cgroupfs and file events need no systemd.
	p.flags = []string{"--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "runroot"),
		"--tmpdir", filepath.Join(dir, "tmp"), "--storage-driver", "vfs",
		"--cgroup-manager", "cgroupfs", "--events-backend", "file"}
	if out, err := exec.Command("podman", append(append([]string{}, p.flags...), "info")...).CombinedOutput(); err != nil {
		t.Skipf("podman cannot run as this user here: podman info: %v\n%s", err, out)
	}
	p.cmd = exec.Command("podman", append(append([]string{}, p.flags...), "system", "service", "--time=0", p.host)...)
	// Its own process group, killed whole at the end; and killed by the kernel should
	// this test process die first.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	log, err := os.Create(filepath.Join(dir, "service.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	p.cmd.Stdout, p.cmd.Stderr = log, log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.stop()
		if os.Geteuid() != 0 {
			// A rootless store holds files of subordinate ids that only the user
			// namespace may remove.
			exec.Command("podman", "unshare", "rm", "-rf", filepath.Join(dir, "root")).Run()
		}
	})

	// Wait until the service answers its ping; give up after a minute on a loaded machine.
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", p.sock)
	}}}
	defer hc.CloseIdleConnections()
	for deadline := time.Now().Add(time.Minute); ; {
		resp, err := hc.Get("http://podman/_ping")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "service.log"))
			t.Fatalf("podman system service did not answer on %s: %v\n%s", p.sock, err, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
