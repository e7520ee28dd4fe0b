package main

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/img2ext4/img2ext4/internal/registrytest"
	"github.com/img2ext4/img2ext4/internal/tartest"
)

// TestStoreProcesses: processes converting one image through one store at once convert
// it once (every layer blob is fetched once from the registry) and all get the same
// artifact; the store commands then list, verify and prune it.
func TestStoreProcesses(t *testing.T) {
	bin := buildBinary(t)
	reg := registrytest.GGCR(t)
	img := tartest.Image(
		tartest.Tar(tartest.File("etc/a", strings.Repeat("a", 100<<10))),
		tartest.Tar(tartest.File("etc/b", "b"), tartest.Dir("srv")),
		tartest.Tar(tartest.File("srv/c", strings.Repeat("c", 300<<10))),
	)
	ref := reg.Push(t, "test/store:1", img)
	dir := t.TempDir()
	st := filepath.Join(dir, "store")
	out := filepath.Join(dir, "out.img")

	const n = 4
	var cmds []*exec.Cmd
	for i := range n + 1 {
		args := []string{"-q", "--store", st, ref}
		if i == n {
			args = append(args, out)
		}
		cmd := exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr = new(bytes.Buffer), new(bytes.Buffer)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	var paths []string
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("process %d: %v\n%s", i, err, cmd.Stderr)
		}
		paths = append(paths, strings.TrimSpace(cmd.Stdout.(*bytes.Buffer).String()))
	}
	layers, _ := img.Layers()
	for i, l := range layers {
		d, _ := l.Digest()
		if got := reg.Blobs()[d.String()]; got != 1 {
			t.Errorf("layer %d fetched %d times by %d processes, want once", i, got, n+1)
		}
	}
	for i, p := range paths[:n] {
		if p != paths[0] || !strings.HasPrefix(p, st) {
			t.Errorf("process %d printed %q, process 0 %q", i, p, paths[0])
		}
	}
	if paths[n] != "" {
		t.Errorf("with OUTPUT, stdout is %q", paths[n])
	}
	a, err := os.ReadFile(paths[0])
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil || !bytes.Equal(a, b) {
		t.Errorf("OUTPUT differs from the stored image (%v)", err)
	}
	e2fsck(t, paths[0])

	code, stdout, stderr := runCLI(t, "", "store", "ls", "--json", "--store", st)
	var list []artifactJSON
	if code != 0 || json.Unmarshal([]byte(stdout), &list) != nil || len(list) != 1 || list[0].Path != paths[0] {
		t.Fatalf("store ls: exit %d, %s%s", code, stdout, stderr)
	}
	code, stdout, stderr = runCLI(t, "", "store", "inspect", "--store", st, list[0].Key.Hex()[:10])
	if code != 0 || !strings.Contains(stdout, list[0].Digest) || !strings.Contains(stdout, "format:    ext4") {
		t.Errorf("store inspect: exit %d, %s%s", code, stdout, stderr)
	}
	code, stdout, stderr = runCLI(t, "", "store", "verify", "--json", "--store", st)
	if code != 0 || !strings.Contains(stdout, `"checked": 1`) {
		t.Errorf("store verify: exit %d, %s%s", code, stdout, stderr)
	}
	// Damage the artifact: verify fails.
	if err := os.WriteFile(paths[0], []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, stdout, _ = runCLI(t, "", "store", "verify", "--store", st); code != 1 || !strings.Contains(stdout, "1 bad") {
		t.Errorf("store verify of a damaged artifact: exit %d, %s", code, stdout)
	}
	code, stdout, stderr = runCLI(t, "", "store", "prune", "--json", "--max-size", "1K", "--store", st)
	if code != 0 || !strings.Contains(stdout, list[0].Key.String()) {
		t.Errorf("store prune: exit %d, %s%s", code, stdout, stderr)
	}
	if code, stdout, _ = runCLI(t, "", "store", "ls", "--json", "--store", st); code != 0 || strings.TrimSpace(stdout) != "[]" {
		t.Errorf("store ls after prune: exit %d, %s", code, stdout)
	}
}

func e2fsck(t *testing.T, img string) {
	t.Helper()
	path, err := exec.LookPath("e2fsck")
	if err != nil {
		t.Log("e2fsck not found: image not checked")
		return
	}
	if out, err := exec.Command(path, "-fn", img).CombinedOutput(); err != nil {
		t.Errorf("e2fsck -fn %s: %v\n%s", img, err, out)
	}
}

func TestStoreUsage(t *testing.T) {
	st := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"store"}, "want a subcommand"},
		{[]string{"store", "frob", "--store", st}, "unknown subcommand"},
		{[]string{"store", "ls"}, "--store DIR"},
		{[]string{"store", "inspect", "--store", st}, "wants 1 arguments"},
		{[]string{"store", "rm", "--store", st}, "one or more KEYs"},
		{[]string{"--store", st, "--format", "dir", "a"}, "not --format dir"},
		{[]string{"--store", st, "--format", "tar", "a", "-"}, "not -"},
		{[]string{"--store-fallback", st, "a", "b"}, "needs --store"},
	} {
		code, _, stderr := runCLI(t, "", tc.args...)
		if code != exitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
}

// TestStoreKill: a conversion through the store killed (SIGKILL) at a random moment, in
// a loop with a fixed seed, leaves a store that verifies clean, and the next request
// succeeds with an e2fsck-clean image.
func TestStoreKill(t *testing.T) {
	bin := buildBinary(t)
	reg := registrytest.GGCR(t)
	ref := reg.Push(t, "test/kill:1", tartest.Image(
		tartest.Tar(tartest.File("a", strings.Repeat("a", 1<<20))),
		tartest.Tar(tartest.File("b", strings.Repeat("b", 1<<20))),
	))
	rng := rand.New(rand.NewPCG(9, 1))
	for i := range 4 {
		st := filepath.Join(t.TempDir(), "store")
		cmd := exec.Command(bin, "-q", "--store", st, ref)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(rng.IntN(400)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		code, stdout, stderr := runCLI(t, "", "store", "verify", "--store", st)
		if code != 0 {
			t.Errorf("run %d: verify after kill -9: exit %d, %s%s", i, code, stdout, stderr)
		}
		out := filepath.Join(t.TempDir(), "out.img")
		if code, _, stderr := runCLI(t, "", "-q", "--store", st, ref, out); code != 0 {
			t.Fatalf("run %d: conversion after kill -9: exit %d, %s", i, code, stderr)
		}
		e2fsck(t, out)
	}
}
