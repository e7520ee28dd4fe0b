package exporter_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"log"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/img2ext4/img2ext4"
	"github.com/img2ext4/img2ext4/exporter"
	"github.com/img2ext4/img2ext4/internal/tartest"
	"github.com/img2ext4/img2ext4/internal/treesnap"
	"github.com/img2ext4/img2ext4/layerapply"
	"github.com/img2ext4/img2ext4/ocifetch"
	"github.com/img2ext4/img2ext4/progress"
)

// layers exercise the merge rules and the metadata an engine must hand back unchanged:
// owners, modes with setuid, a capability, user xattrs, hard and symbolic links, times
// before 1970, a whiteout, an opaque directory and a file replacing a directory.
func layers() [][]byte {
	at := func(y int) tartest.Opt { return tartest.Mtime(time.Date(y, 3, 4, 5, 6, 7, 123456789, time.UTC)) }
	cap := []byte{1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0} // v2, cap_net_raw
	big := bytes.Repeat([]byte("0123456789abcdef"), 80000)
	return [][]byte{
		tartest.Tar(
			tartest.Dir("etc", at(2020)), tartest.Dir("usr", at(2020)), tartest.Dir("usr/bin", at(2020)),
			tartest.Symlink("bin", "usr/bin", at(2020)),
			tartest.Dir("home", at(2020)), tartest.Dir("home/u", at(2020), tartest.Owner(1000, 1000), tartest.Mode(0o750)),
			tartest.File("home/u/notes", "private\n", at(1960), tartest.Owner(1000, 1000), tartest.Mode(0o600)),
			tartest.File("usr/bin/tool", "#!/bin/sh\n", at(2020), tartest.Mode(0o4755)),
			tartest.File("usr/bin/ping", "ping", at(2020), tartest.Mode(0o755), tartest.Xattr("security.capability", string(cap))),
			tartest.File("etc/big", string(big), at(2020)),
			tartest.File("etc/old", "old config", at(2020)),
			tartest.Link("etc/old.bak", "etc/old", at(2020)),
			tartest.Dir("var", at(2020)), tartest.Dir("var/cache", at(2020)),
			tartest.File("var/cache/a", "a", at(2020)),
			tartest.Dir("opt", at(2020)), tartest.Dir("opt/x", at(2020)), tartest.File("opt/x/y", "y", at(2020)),
			tartest.File("etc/xattrs", "x", at(2020), tartest.Xattr("user.one", "1")),
		),
		tartest.Tar(
			tartest.Whiteout("etc/big"),
			tartest.Dir("var/cache", at(2021)), tartest.Opaque("var/cache"), tartest.File("var/cache/c", "c", at(2021)),
			tartest.File("etc/old", "new config", at(2021)),
			tartest.File("opt/x", "x is a file now", at(2021)),
		),
		tartest.Tar(
			tartest.Link("usr/bin/tool2", "usr/bin/tool", at(2022)),
			tartest.File("bin/added", "through the symlink", at(2022), tartest.Mode(0o755)),
		),
	}
}

// pushed serves img from an in-process registry on loopback and returns its reference.
func pushed(t *testing.T, img v1.Image) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	ref := u.Host + "/test/img:1"
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	return ref
}

func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			pkg := map[string]string{"e2fsck": "e2fsprogs", "debugfs": "e2fsprogs"}[tool]
			if pkg == "" {
				pkg = tool
			}
			t.Skipf("%s not installed (Debian package %s)", tool, pkg)
		}
	}
}

// needStoreAccess skips a test that has skopeo read the podman store directly: a rootless
// store holds files of subordinate ids, readable only inside "podman unshare".
func needStoreAccess(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skopeo reads a rootless podman store only inside podman unshare; run as root")
	}
}

// convert converts ref to an ext4 image, checks it with e2fsck -fn and returns the tree
// debugfs reads from it.
func convert(t *testing.T, ref string, opts ...img2ext4.Option) []string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "rootfs.img")
	if _, err := img2ext4.Convert(context.Background(), ref, out, opts...); err != nil {
		t.Fatalf("convert %s: %v", ref, err)
	}
	if b, err := exec.Command("e2fsck", "-fn", out).CombinedOutput(); err != nil {
		t.Fatalf("e2fsck -fn %s: %v\n%s", ref, err, b)
	}
	dump := filepath.Join(t.TempDir(), "rdump")
	if err := os.Mkdir(dump, 0o755); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command("debugfs", "-R", "rdump / "+dump, out).CombinedOutput(); err != nil {
		t.Fatalf("debugfs rdump: %v\n%s", err, b)
	}
	es, err := treesnap.Dir(dump, treesnap.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range es {
		if es[i].Type == 'l' {
			es[i].Mtime = time.Time{} // rdump does not restore the times of symbolic links
		}
	}
	return treesnap.Lines(es)
}

// TestEngineSources converts one image pulled into a podman store from a test registry,
// read back from the engine in every way this module offers, and checks that each ext4
// tree equals the one converted straight from the registry; then stops the engine and
// checks the error that names it.
func TestEngineSources(t *testing.T) {
	needTools(t, "e2fsck", "debugfs")
	p := startPodman(t)
	ref := pushed(t, tartest.Image(layers()...))
	p.run(t, "pull", "--quiet", "--tls-verify=false", ref)
	id := "sha256:" + strings.TrimSpace(p.run(t, "image", "inspect", "--format", "{{.Id}}", ref))
	engine := img2ext4.WithFetchOptions(ocifetch.WithEngineHost(p.host))

	want := convert(t, ref)
	if len(want) < 10 {
		t.Fatalf("the registry conversion holds only %d names", len(want))
	}
	for _, tc := range []struct {
		name  string
		tools []string
		ref   string
		opts  []img2ext4.Option
	}{
		{name: "docker-daemon by name", ref: "docker-daemon:" + ref, opts: []img2ext4.Option{engine}},
		{name: "docker-daemon by ID", ref: "docker-daemon:" + id, opts: []img2ext4.Option{engine}},
		{name: "docker-daemon auto", ref: "docker-daemon:" + ref, opts: []img2ext4.Option{engine, img2ext4.WithExporter(exporter.Auto)}},
		{name: "containers-storage auto", tools: []string{"skopeo"}, ref: "containers-storage:" + p.storeSpec() + ref,
			opts: []img2ext4.Option{img2ext4.WithExporter(exporter.Auto)}},
		{name: "containers-storage skopeo", tools: []string{"skopeo"}, ref: "containers-storage:" + p.storeSpec() + ref,
			opts: []img2ext4.Option{img2ext4.WithExporter(exporter.Skopeo)}},
		{name: "docker-daemon skopeo", tools: []string{"skopeo"}, ref: "docker-daemon:" + ref,
			opts: []img2ext4.Option{engine, img2ext4.WithExporter(exporter.Skopeo)}},
		{name: "registry skopeo", tools: []string{"skopeo"}, ref: ref, opts: []img2ext4.Option{img2ext4.WithExporter(exporter.Skopeo)}},
		{name: "docker save", tools: []string{"docker"}, ref: "docker-daemon:" + ref,
			opts: []img2ext4.Option{engine, img2ext4.WithExporter(exporter.Docker)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			needTools(t, tc.tools...)
			if strings.HasPrefix(tc.ref, "containers-storage:") {
				needStoreAccess(t)
			}
			got := convert(t, tc.ref, tc.opts...)
			if d := treesnap.Diff(want, got); d != "" {
				t.Fatalf("%s differs from the registry conversion (-registry +engine):\n%s", tc.ref, d)
			}
		})
	}

	// The root filesystem is changed once, after the merge, whichever exporter fetched:
	// the mutation appends a line, so running it twice would show in the tree.
	t.Run("mutation once through skopeo", func(t *testing.T) {
		needTools(t, "skopeo")
		needStoreAccess(t)
		runs := 0
		appendLine := img2ext4.WithMutate(func(ctx context.Context, root layerapply.RootFS) error {
			runs++
			b, err := fs.ReadFile(root, "etc/old")
			if err != nil {
				return err
			}
			return root.WriteFile("etc/old", bytes.NewReader(append(b, "\nmutated"...)), 0o644)
		})
		want := convert(t, ref, appendLine)
		if runs != 1 || !slices.ContainsFunc(want, func(l string) bool { return strings.Contains(l, `"new config\nmutated"`) }) {
			t.Fatalf("the registry conversion ran the mutation %d times; tree:\n%s", runs, strings.Join(want, "\n"))
		}
		runs = 0
		got := convert(t, "containers-storage:"+p.storeSpec()+ref, appendLine, img2ext4.WithExporter(exporter.Auto))
		if runs != 1 {
			t.Errorf("the mutation ran %d times through skopeo, want once", runs)
		}
		if d := treesnap.Diff(want, got); d != "" {
			t.Errorf("mutated through skopeo differs from the registry conversion (-registry +skopeo):\n%s", d)
		}
	})

	t.Run("native refuses containers-storage", func(t *testing.T) {
		_, err := img2ext4.Convert(context.Background(), "containers-storage:"+p.storeSpec()+ref, filepath.Join(t.TempDir(), "img"))
		if !errors.Is(err, ocifetch.ErrUnsupportedTransport) {
			t.Fatalf("err = %v, want ErrUnsupportedTransport", err)
		}
	})
	// The store keys a docker-daemon: image with one inspect request: by its ID, which
	// pins it, and the pinned reference converts to the same tree.
	t.Run("resolve", func(t *testing.T) {
		r, err := ocifetch.Resolve(context.Background(), "docker-daemon:"+ref, ocifetch.WithEngineHost(p.host))
		if err != nil {
			t.Fatal(err)
		}
		if r.Digest.String() != id || r.Pinned != "docker-daemon:"+id {
			t.Fatalf("resolved to %s, pinned %s; want the image ID %s", r.Digest, r.Pinned, id)
		}
		key, in, err := img2ext4.StoreKey(context.Background(), "docker-daemon:"+ref, engine)
		if err != nil || key == "" || in.Source != id {
			t.Fatalf("StoreKey = %q, source %q, %v; want source %s", key, in.Source, err, id)
		}
		if d := treesnap.Diff(want, convert(t, r.Pinned, engine)); d != "" {
			t.Errorf("the pinned reference converts to another tree (-registry +pinned):\n%s", d)
		}
	})
	// The spooled export is closed when the conversion returns, not when the garbage
	// collector finds it: no descriptor of this process points at it any more.
	t.Run("spool released", func(t *testing.T) {
		convert(t, "docker-daemon:"+ref, engine)
		fds, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skipf("no /proc/self/fd: %v", err)
		}
		for _, fd := range fds {
			if target, _ := os.Readlink("/proc/self/fd/" + fd.Name()); strings.Contains(target, "ocifetch-engine-") {
				t.Errorf("descriptor %s still holds the spooled export %s", fd.Name(), target)
			}
		}
	})
	// The export is reported while it streams in, as bytes of the resolve phase.
	t.Run("progress", func(t *testing.T) {
		var exported int64
		onEvent := img2ext4.WithProgress(func(e progress.Event) {
			if e.Phase == progress.PhaseResolve && e.Layer < 0 && e.Done > exported {
				exported = e.Done
			}
		})
		convert(t, "docker-daemon:"+ref, engine, onEvent)
		if exported == 0 {
			t.Error("no resolve event counted the export's bytes")
		}
	})
	t.Run("other platform", func(t *testing.T) {
		other := ocifetch.WithPlatform(v1.Platform{OS: "linux", Architecture: "riscv64"})
		_, err := img2ext4.Convert(context.Background(), "docker-daemon:"+ref, filepath.Join(t.TempDir(), "img"), img2ext4.WithFetchOptions(ocifetch.WithEngineHost(p.host), other))
		if !errors.Is(err, ocifetch.ErrPlatform) {
			t.Fatalf("err = %v, want ErrPlatform", err)
		}
	})
	t.Run("missing image", func(t *testing.T) {
		_, err := img2ext4.Convert(context.Background(), "docker-daemon:localhost/no/such:image", filepath.Join(t.TempDir(), "img"), engine)
		if !errors.Is(err, ocifetch.ErrNotFound) || !strings.Contains(err.Error(), p.host) || !strings.Contains(err.Error(), "pull or load") {
			t.Fatalf("err = %v, want ErrNotFound naming %s and what to do", err, p.host)
		}
	})

	p.stop()
	for _, mode := range []exporter.Mode{exporter.Native, exporter.Auto} {
		t.Run("stopped engine "+string(mode), func(t *testing.T) {
			_, err := img2ext4.Convert(context.Background(), "docker-daemon:"+ref, filepath.Join(t.TempDir(), "img"), engine, img2ext4.WithExporter(mode))
			if !errors.Is(err, ocifetch.ErrEngineUnreachable) || !strings.Contains(err.Error(), p.sock) {
				t.Fatalf("err = %v, want ErrEngineUnreachable naming %s", err, p.sock)
			}
			t.Log(err)
		})
	}
}
