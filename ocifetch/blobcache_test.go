package ocifetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
)

// blobCounter counts the blob requests (GET and HEAD) a registry serves, by
// digest; delay slows each one down so that concurrent fetchers overlap.
type blobCounter struct {
	mu    sync.Mutex
	n     map[string]int
	delay time.Duration
}

func (c *blobCounter) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if i := strings.LastIndex(r.URL.Path, "/blobs/"); i >= 0 && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			c.mu.Lock()
			if c.n == nil {
				c.n = map[string]int{}
			}
			c.n[r.URL.Path[i+len("/blobs/"):]]++
			c.mu.Unlock()
			time.Sleep(c.delay)
		}
		h.ServeHTTP(w, r)
	})
}

// take returns the counts so far and starts afresh.
func (c *blobCounter) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.n
	c.n = nil
	if n == nil {
		n = map[string]int{}
	}
	return n
}

// imageOf builds an image of the given layers.
func imageOf(t *testing.T, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func randomLayers(t *testing.T, n int) []v1.Layer {
	t.Helper()
	var ls []v1.Layer
	for range n {
		l, err := random.Layer(32<<10, "application/vnd.oci.image.layer.v1.tar+gzip")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
	}
	return ls
}

// fetchAll resolves ref with a blob cache, prefetches it and reads every
// layer to its end, returning the image.
func fetchAll(t *testing.T, ref, cache string, opts ...Option) v1.Image {
	t.Helper()
	opts = append([]Option{WithBlobCache(cache), WithTempDir(t.TempDir())}, opts...)
	img, err := Image(ctxBG, ref, opts...)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Prefetch(ctxBG, img, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	readEach(t, p.Layers(), make([]byte, 64<<10))
	return img
}

// checkCache verifies every blob of the cache and that no download is left
// over, returning the digests it holds.
func checkCache(t *testing.T, dir string) map[string]bool {
	t.Helper()
	c, err := OpenBlobCache(dir)
	if err != nil {
		t.Fatal(err)
	}
	blobs, err := c.Blobs()
	if err != nil {
		t.Fatal(err)
	}
	held := map[string]bool{}
	for _, b := range blobs {
		data, err := os.ReadFile(b.Path)
		if err != nil {
			t.Fatal(err)
		}
		if got := sha256Of(data); got != b.Digest {
			t.Errorf("cache file %s holds %s", b.Path, got)
		}
		held[b.Digest.String()] = true
	}
	if left := dirEntries(t, filepath.Join(dir, "tmp")); len(left) != 0 {
		t.Errorf("downloads left in the cache: %v", left)
	}
	return held
}

func digestsOf(t *testing.T, img v1.Image) (config string, layers []string) {
	t.Helper()
	cfg, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		layers = append(layers, mustDigest(t, l).String())
	}
	return cfg.String(), layers
}

// TestBlobCacheSharedLayers converts tag B after tag A, which shares three
// of its four layers: only B's config and fourth layer are fetched; a
// repeat with other options fetches no blob.
func TestBlobCacheSharedLayers(t *testing.T) {
	isolateCredentials(t)
	var count blobCounter
	_, host := newRegistry(t, count.wrap)
	ls := randomLayers(t, 5)
	a, b := imageOf(t, ls[0], ls[1], ls[2], ls[3]), imageOf(t, ls[0], ls[1], ls[2], ls[4])
	push(t, host+"/app:a", a)
	push(t, host+"/app:b", b)
	count.take()
	cache := filepath.Join(t.TempDir(), "blobs")

	fetchAll(t, host+"/app:a", cache)
	cfgA, layersA := digestsOf(t, a)
	got := count.take()
	for _, d := range append(layersA, cfgA) {
		if got[d] != 1 {
			t.Errorf("tag a: blob %s fetched %d times, want 1", d, got[d])
		}
	}

	fetchAll(t, host+"/app:b", cache)
	cfgB, layersB := digestsOf(t, b)
	want := map[string]int{cfgB: 1, layersB[3]: 1}
	if got := count.take(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("tag b after tag a fetched blobs %v, want only its config and fourth layer %v", got, want)
	}

	fetchAll(t, host+"/app:b", cache, WithJobs(1), WithPlatform(defaultPlatform()))
	if got := count.take(); len(got) != 0 {
		t.Errorf("repeat of tag b fetched blobs %v, want none", got)
	}
	held := checkCache(t, cache)
	for _, d := range append(append(layersA, layersB[3]), cfgA, cfgB) {
		if !held[d] {
			t.Errorf("cache lacks %s", d)
		}
	}

	// Without Prefetch, layers read through the image use the cache too.
	img, err := Image(ctxBG, host+"/app:b", WithBlobCache(cache))
	if err != nil {
		t.Fatal(err)
	}
	il, _ := img.Layers()
	sameLayers(t, b, il)
	if got := count.take(); len(got) != 0 {
		t.Errorf("reading tag b's layers directly fetched blobs %v, want none", got)
	}
}

// TestBlobCacheCorrupt damages cached blobs in several ways: each damaged
// one is fetched again and replaced, the others are not fetched.
func TestBlobCacheCorrupt(t *testing.T) {
	isolateCredentials(t)
	var count blobCounter
	_, host := newRegistry(t, count.wrap)
	ls := randomLayers(t, 4)
	img := imageOf(t, ls...)
	push(t, host+"/app:1", img)
	cache := filepath.Join(t.TempDir(), "blobs")
	fetchAll(t, host+"/app:1", cache)
	count.take()

	cfg, layers := digestsOf(t, img)
	path := func(d string) string {
		alg, hex, _ := strings.Cut(d, ":")
		return filepath.Join(cache, alg, hex)
	}
	damage := map[string]func([]byte) []byte{
		layers[0]: func(b []byte) []byte { b[len(b)/2] ^= 1; return b }, // same size
		layers[2]: func(b []byte) []byte { return b[:len(b)-1] },        // truncated
		cfg:       func(b []byte) []byte { return append(b, '\n') },     // grown
	}
	for d, fn := range damage {
		b, err := os.ReadFile(path(d))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path(d), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path(d), fn(b), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The last layer is removed outright.
	if err := os.Remove(path(layers[3])); err != nil {
		t.Fatal(err)
	}

	got := fetchAll(t, host+"/app:1", cache)
	il, _ := got.Layers()
	sameLayers(t, img, il)
	want := map[string]int{layers[0]: 1, layers[2]: 1, layers[3]: 1, cfg: 1}
	if got := count.take(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("fetched %v, want the damaged and missing blobs once each %v", got, want)
	}
	held := checkCache(t, cache)
	for _, d := range append(layers, cfg) {
		if !held[d] {
			t.Errorf("cache lacks %s", d)
		}
	}
}

// TestBlobCacheProcesses fills one cache from several processes at once
// (this test binary re-executed): all succeed, each blob is downloaded once,
// and the cache verifies.
func TestBlobCacheProcesses(t *testing.T) {
	isolateCredentials(t)
	count := blobCounter{delay: 50 * time.Millisecond}
	_, host := newRegistry(t, count.wrap)
	img := imageOf(t, randomLayers(t, 4)...)
	push(t, host+"/app:1", img)
	count.take()
	cache := filepath.Join(t.TempDir(), "blobs")

	const procs = 3
	var cmds []*exec.Cmd
	var outs []*strings.Builder
	for range procs {
		cmd := exec.Command(os.Args[0], "-test.run=^TestBlobCacheChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), "OCIFETCH_CACHE_CHILD_REF="+host+"/app:1", "OCIFETCH_CACHE_CHILD_DIR="+cache)
		out := &strings.Builder{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds, outs = append(cmds, cmd), append(outs, out)
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Errorf("process %d: %v\n%s", i, err, outs[i])
		} else if !strings.Contains(outs[i].String(), "child ok") {
			t.Errorf("process %d did not run the fetch:\n%s", i, outs[i])
		}
	}
	cfg, layers := digestsOf(t, img)
	got := count.take()
	for _, d := range append(layers, cfg) {
		if got[d] != 1 {
			t.Errorf("blob %s downloaded %d times by %d processes, want once", d, got[d], procs)
		}
	}
	held := checkCache(t, cache)
	for _, d := range append(layers, cfg) {
		if !held[d] {
			t.Errorf("cache lacks %s", d)
		}
	}
}

// TestBlobCacheChild is the process TestBlobCacheProcesses starts.
func TestBlobCacheChild(t *testing.T) {
	ref, dir := os.Getenv("OCIFETCH_CACHE_CHILD_REF"), os.Getenv("OCIFETCH_CACHE_CHILD_DIR")
	if ref == "" {
		t.Skip("run by TestBlobCacheProcesses")
	}
	fetchAll(t, ref, dir)
	fmt.Println("child ok")
}

// TestBlobCachePrune removes blobs by age and least recent use, and
// abandoned downloads and locks, and leaves what is in use alone.
func TestBlobCachePrune(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	type blob struct {
		size int
		age  time.Duration
	}
	blobs := []blob{{100, time.Hour}, {200, 3 * time.Hour}, {300, 2 * time.Hour}, {400, 0}}
	for _, tc := range []struct {
		name    string
		opts    PruneOptions
		removed []int // indexes into blobs, oldest first
	}{
		{"no bound", PruneOptions{}, nil},
		{"negative size", PruneOptions{MaxSize: -1}, nil},
		{"everything", PruneOptions{MaxSize: 1}, []int{1, 2, 0, 3}},
		{"size", PruneOptions{MaxSize: 700}, []int{1, 2}},
		{"size fits", PruneOptions{MaxSize: 1000}, nil},
		{"age", PruneOptions{OlderThan: 90 * time.Minute}, []int{1, 2}},
		{"age and size", PruneOptions{MaxSize: 450, OlderThan: 150 * time.Minute}, []int{1, 2, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			c, err := OpenBlobCache(dir)
			if err != nil {
				t.Fatal(err)
			}
			var digests []v1.Hash
			for i, b := range blobs {
				data := []byte(strings.Repeat(strconv.Itoa(i), b.size))
				desc := v1.Descriptor{Digest: sha256Of(data), Size: int64(len(data))}
				f, err := c.get(ctxBG, desc, func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(string(data))), nil })
				if err != nil {
					t.Fatal(err)
				}
				f.Close()
				p, _ := c.path(desc.Digest)
				if err := os.Chtimes(p, now.Add(-b.age), now.Add(-b.age)); err != nil {
					t.Fatal(err)
				}
				digests = append(digests, desc.Digest)
			}
			// An abandoned download and lock, and a fresh download.
			stale, fresh := filepath.Join(dir, "tmp", "stale"), filepath.Join(dir, "tmp", "fresh")
			staleLock := filepath.Join(dir, "locks", "sha256-stale")
			for _, p := range []string{stale, fresh, staleLock} {
				if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
					t.Fatal(err)
				}
				at := now.Add(-2 * time.Hour)
				if p == fresh {
					at = now
				}
				if err := os.Chtimes(p, at, at); err != nil {
					t.Fatal(err)
				}
			}

			res, err := c.Prune(ctxBG, PruneOptions{MaxSize: tc.opts.MaxSize, OlderThan: tc.opts.OlderThan, Now: now})
			if err != nil {
				t.Fatal(err)
			}
			var gotRemoved []v1.Hash
			for _, r := range res.Removed {
				gotRemoved = append(gotRemoved, r.Digest)
			}
			var wantRemoved []v1.Hash
			var freed int64
			for _, i := range tc.removed {
				wantRemoved = append(wantRemoved, digests[i])
				freed += int64(blobs[i].size)
			}
			if fmt.Sprint(gotRemoved) != fmt.Sprint(wantRemoved) || res.RemovedBytes != freed {
				t.Errorf("removed %v (%d bytes), want %v (%d bytes)", gotRemoved, res.RemovedBytes, wantRemoved, freed)
			}
			left, err := c.Blobs()
			if err != nil {
				t.Fatal(err)
			}
			if len(left) != res.Kept || len(left)+len(res.Removed) != len(blobs) || res.KeptBytes+res.RemovedBytes != 1000 {
				t.Errorf("%d blobs left, result %+v", len(left), res)
			}
			for _, p := range []string{stale, staleLock} {
				if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s survived: %v", p, err)
				}
			}
			if _, err := os.Stat(fresh); err != nil {
				t.Errorf("a download in progress was removed: %v", err)
			}
		})
	}
}

// TestBlobCacheLockCancel waits for a blob another holder has locked, and
// gives up when the context ends.
func TestBlobCacheLockCancel(t *testing.T) {
	c, err := OpenBlobCache(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("blob")
	desc := v1.Descriptor{Digest: sha256Of(data), Size: int64(len(data))}
	unlock, err := c.lock(ctxBG, desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(ctxBG, 300*time.Millisecond)
	defer cancel()
	_, err = c.get(ctx, desc, func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(string(data))), nil })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("get while locked: %v, want the context's deadline", err)
	}
	unlock()
	f, err := c.get(ctxBG, desc, func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(string(data))), nil })
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
}
