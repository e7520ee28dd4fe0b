package ocifetch

import (
	"bytes"
	"context"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/img2ext4/img2ext4/internal/faultproxy"
	"github.com/img2ext4/img2ext4/progress"
)

// countBlobs tracks how many blob GETs run at once, delaying each a little
// so that overlaps show.
func countBlobs(cur, peak *atomic.Int32) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
				n := cur.Add(1)
				defer cur.Add(-1)
				for {
					p := peak.Load()
					if n <= p || peak.CompareAndSwap(p, n) {
						break
					}
				}
				time.Sleep(30 * time.Millisecond)
			}
			h.ServeHTTP(w, r)
		})
	}
}

func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestPrefetch(t *testing.T) {
	isolateCredentials(t)
	var cur, peak atomic.Int32
	_, host := newRegistry(t, countBlobs(&cur, &peak))
	want := randomImage(t, 200<<10, 5, nil)
	push(t, host+"/p:1", want)

	img, err := Image(ctxBG, host+"/p:1")
	if err != nil {
		t.Fatal(err)
	}
	peak.Store(0) // the config fetch does not count

	var (
		mu     sync.Mutex
		events []progress.Event
	)
	tmp := t.TempDir()
	p, err := Prefetch(ctxBG, img, WithJobs(3), WithTempDir(tmp), WithProgress(func(ev progress.Event) {
		mu.Lock()
		events = append(events, ev)
		mu.Unlock()
	}))
	if err != nil {
		t.Fatal(err)
	}
	// The layers are read once every download has ended: a layer read before its
	// download started would start it beyond the limit (TestPrefetchDemand).
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(5 * time.Millisecond) {
		mu.Lock()
		n := 0
		for _, ev := range events {
			if ev.Complete {
				n++
			}
		}
		mu.Unlock()
		if n >= 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of 5 downloads complete after a minute", n)
		}
	}
	layers := p.Layers()
	sameLayers(t, want, layers)
	for i, l := range layers {
		wl, _ := want.Layers()
		wd, _ := wl[i].DiffID()
		if gd, _ := l.DiffID(); gd != wd {
			t.Errorf("layer %d diffID %s, want %s", i, gd, wd)
		}
		wmt, _ := wl[i].MediaType()
		if mt, _ := l.MediaType(); mt != wmt {
			t.Errorf("layer %d media type %s, want %s", i, mt, wmt)
		}
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		u, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if sha256Of(u) != wd {
			t.Errorf("layer %d: uncompressed bytes do not match diffID", i)
		}
	}
	if got := peak.Load(); got > 3 || got < 2 {
		t.Errorf("peak parallel blob downloads %d, want 2..3", got)
	}

	mu.Lock()
	complete := map[int]progress.Event{}
	for _, ev := range events {
		if ev.Phase != progress.PhaseDownload || ev.Layers != 5 || ev.Total <= 0 || ev.Done > ev.Total {
			t.Errorf("bad event %+v", ev)
		}
		if ev.Complete {
			if _, dup := complete[ev.Layer]; dup {
				t.Errorf("layer %d: two complete events", ev.Layer)
			}
			complete[ev.Layer] = ev
		}
	}
	mu.Unlock()
	for i, l := range layers {
		ev, ok := complete[i]
		size, _ := l.Size()
		d, _ := l.Digest()
		if !ok || ev.Done != size || ev.Total != size || ev.Digest != d.String() {
			t.Errorf("layer %d: complete event %+v, want done=total=%d digest %s", i, ev, size, d)
		}
	}

	if len(dirEntries(t, tmp)) != 1 {
		t.Errorf("temp dir holds %v, want one prefetch dir", dirEntries(t, tmp))
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if left := dirEntries(t, tmp); len(left) != 0 {
		t.Errorf("Close left %v", left)
	}
	if _, err := layers[0].Compressed(); !errors.Is(err, ErrClosed) {
		t.Errorf("Compressed after Close: %v, want ErrClosed", err)
	}
}

// TestPrefetchDemand checks that a layer read before its download started
// starts downloading at once instead of waiting for a slot: with one slot,
// taken by layer 0 whose blob the registry holds back, reading layer 2 (as a
// decoder taking the largest layer first does) must make its request.
func TestPrefetchDemand(t *testing.T) {
	isolateCredentials(t)
	want := randomImage(t, 64<<10, 3, nil)
	wl, err := want.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var digests []string
	for _, l := range wl {
		digests = append(digests, mustDigest(t, l).String())
	}
	hold := make(chan struct{})
	var (
		mu    sync.Mutex
		order []int // layers whose blob was asked for, in order
	)
	asked := make(chan int, 16)
	_, host := newRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			for i, d := range digests {
				if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+d) {
					mu.Lock()
					order = append(order, i)
					mu.Unlock()
					asked <- i
					if i == 0 {
						<-hold
					}
				}
			}
			h.ServeHTTP(w, r)
		})
	})
	released := false
	release := func() {
		if !released {
			released = true
			close(hold)
		}
	}
	t.Cleanup(release) // before the server closes
	push(t, host+"/d:1", want)
	img, err := Image(ctxBG, host+"/d:1")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Prefetch(ctxBG, img, WithJobs(1), WithTempDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	waitAsked := func(want int) {
		t.Helper()
		select {
		case i := <-asked:
			if i != want {
				t.Fatalf("blob of layer %d asked for, want layer %d", i, want)
			}
		case <-time.After(10 * time.Second): // bounds a wait that never ends on a failure
			t.Fatalf("blob of layer %d not asked for", want)
		}
	}
	waitAsked(0)
	layers := p.Layers()
	// The reader reports through got only, never through t: it may outlive a test that
	// failed first.
	type read struct {
		b   []byte
		err error
	}
	got := make(chan read, 1)
	go func() {
		rc, err := layers[2].Compressed()
		if err != nil {
			got <- read{err: err}
			return
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		got <- read{b, err}
	}()
	waitAsked(2)
	release()
	if r := <-got; r.err != nil {
		t.Errorf("layer 2 read while layer 0 was held: %v", r.err)
	} else if !bytes.Equal(r.b, readLayers(t, wl[2:])[0]) {
		t.Error("layer 2 read while layer 0 was held differs from the source")
	}
	sameLayers(t, want, layers)
	mu.Lock()
	defer mu.Unlock()
	if len(order) != 3 || order[2] != 1 {
		t.Errorf("blobs asked for in the order %v, want [0 2 1], each once", order)
	}
}

// TestPrefetchInOrderLimit checks that a reader that takes the layers in order and keeps
// up with the downloads never makes them exceed WithJobs: a download gives its slot back
// before its reader learns that it ended, so the reader's next layer starts in that slot
// (from the reader or from the loop), not beyond the limit beside the loop's next one.
func TestPrefetchInOrderLimit(t *testing.T) {
	isolateCredentials(t)
	var cur, peak atomic.Int32
	want := randomImage(t, 32<<10, 8, nil)
	// A blob GET counts from its arrival until its response is ready: the response is
	// made in memory and sent after the count drops, so that a download the client has
	// ended never counts beside the next one.
	_, host := newRegistry(t, func(h http.Handler) http.Handler {
		count := countBlobs(&cur, &peak)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rec := httptest.NewRecorder()
			count(h).ServeHTTP(rec, r)
			maps.Copy(w.Header(), rec.Header())
			w.WriteHeader(rec.Code)
			w.Write(rec.Body.Bytes())
		})
	})
	push(t, host+"/o:1", want)
	img, err := Image(ctxBG, host+"/o:1")
	if err != nil {
		t.Fatal(err)
	}
	peak.Store(0) // the config fetch does not count
	p, err := Prefetch(ctxBG, img, WithJobs(1), WithTempDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	sameLayers(t, want, p.Layers())
	if got := peak.Load(); got != 1 {
		t.Errorf("peak parallel blob downloads %d with WithJobs(1) and a reader in layer order, want 1", got)
	}
}

func TestPrefetchForeignImage(t *testing.T) {
	want := randomImage(t, 4096, 3, nil)
	p, err := Prefetch(ctxBG, want, WithTempDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	sameLayers(t, want, p.Layers())
}

func TestPrefetchCorrupt(t *testing.T) {
	isolateCredentials(t)
	img := randomImage(t, 4096, 3, nil)
	ls, _ := img.Layers()
	bad := mustDigest(t, ls[2])
	_, host := newRegistry(t, mangleBlob(bad, func(b []byte) []byte { b = append([]byte(nil), b...); b[0] ^= 1; return b }, false))
	push(t, host+"/bad:1", img)
	ri, err := Image(ctxBG, host+"/bad:1")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Prefetch(ctxBG, ri, WithJobs(1), WithTempDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	layers := p.Layers()
	readLayers(t, layers[:2])
	err = drainBlob(layers[2])
	var de *DigestError
	if !errors.As(err, &de) || de.Digest != bad || !strings.Contains(err.Error(), "fetch layer "+bad.String()) {
		t.Fatalf("err = %v, want *DigestError for %s", err, bad)
	}
}

// stallBlobs sends the first bytes of every blob, then waits for the client to go away.
func stallBlobs(started chan<- struct{}) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/blobs/") || r.Header.Get("X-Test-Pass") != "" {
				h.ServeHTTP(w, r)
				return
			}
			w.WriteHeader(http.StatusOK)
			w.Write(make([]byte, 10))
			w.(http.Flusher).Flush()
			select {
			case started <- struct{}{}:
			default:
			}
			<-r.Context().Done()
		})
	}
}

func TestPrefetchCancel(t *testing.T) {
	isolateCredentials(t)
	started := make(chan struct{}, 1)
	img := randomImage(t, 1024, 3, nil)
	// Serve the config normally: only layer blobs stall.
	cfg, _ := img.ConfigName()
	_, host := newRegistry(t, func(h http.Handler) http.Handler {
		stall := stallBlobs(started)(h)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, cfg.String()) {
				h.ServeHTTP(w, r)
				return
			}
			stall.ServeHTTP(w, r)
		})
	})
	push(t, host+"/slow:1", img)
	ri, err := Image(ctxBG, host+"/slow:1")
	if err != nil {
		t.Fatal(err)
	}

	for _, how := range []string{"cancel", "close"} {
		t.Run(how, func(t *testing.T) {
			ctx, cancel := context.WithCancel(ctxBG)
			defer cancel()
			tmp := t.TempDir()
			p, err := Prefetch(ctx, ri, WithJobs(2), WithTempDir(tmp))
			if err != nil {
				t.Fatal(err)
			}
			select {
			case <-started:
			case <-time.After(10 * time.Second):
				t.Fatal("no download started")
			}
			errc := make(chan error, 1)
			go func() {
				errc <- drainBlob(p.Layers()[0])
			}()
			closed := make(chan error, 1)
			if how == "cancel" {
				cancel()
			} else {
				go func() { closed <- p.Close() }()
			}
			select {
			case err := <-errc:
				if err == nil {
					t.Fatal("reading a stalled download succeeded")
				}
				if how == "cancel" && !errors.Is(err, context.Canceled) {
					t.Errorf("err = %v, want context.Canceled", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("reading did not return after " + how)
			}
			if how == "cancel" {
				go func() { closed <- p.Close() }()
			}
			select {
			case err := <-closed:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Close hung")
			}
			if left := dirEntries(t, tmp); len(left) != 0 {
				t.Errorf("Close left %v", left)
			}
		})
	}
}

func TestOptionsValidate(t *testing.T) {
	bad := map[string]Option{
		"jobs 0":        WithJobs(0),
		"jobs 1000":     WithJobs(1000),
		"empty tempdir": WithTempDir(""),
		"platform":      WithPlatform(v1.Platform{OS: "linux"}),
		"empty user":    WithBasicAuth("", "x"),
		"nil keychain":  WithKeychain(nil),
		"missing CA":    WithRegistryCA("/nonexistent/ca.pem"),
		"empty UA":      WithUserAgent(""),
	}
	for name, opt := range bad {
		if _, err := makeOptions([]Option{opt}); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := makeOptions([]Option{WithBasicAuth("u", "p"), WithKeychain(DefaultKeychain())}); err == nil {
		t.Error("basic auth with keychain: no error")
	}
	o, err := makeOptions(nil)
	if err != nil || o.jobs != DefaultJobs || o.platform.OS != "linux" || o.userAgent != DefaultUserAgent {
		t.Errorf("defaults %+v, %v", o, err)
	}
}

func TestPrefetchRetry(t *testing.T) {
	isolateCredentials(t)
	img := randomImage(t, 8192, 3, nil)
	cfg, _ := img.ConfigName()
	var mu sync.Mutex
	seen := map[string]int{}
	_, host := newRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/blobs/") || strings.HasSuffix(r.URL.Path, cfg.String()) {
				h.ServeHTTP(w, r)
				return
			}
			mu.Lock()
			seen[r.URL.Path]++
			first := seen[r.URL.Path] == 1
			mu.Unlock()
			if !first {
				h.ServeHTTP(w, r)
				return
			}
			// First try: declare the full length, send half, drop the connection.
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			body := rec.Body.Bytes()
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.WriteHeader(http.StatusOK)
			w.Write(body[:len(body)/2])
		})
	})
	push(t, host+"/flaky:1", img)
	ri, err := Image(ctxBG, host+"/flaky:1")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Prefetch(ctxBG, ri, WithTempDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	sameLayers(t, img, p.Layers())
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 3 {
		t.Errorf("%d blobs fetched, want 3", len(seen))
	}
	for path, n := range seen {
		if n != 2 {
			t.Errorf("%s fetched %d times, want 2", path, n)
		}
	}
}

func TestRetryable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&SizeError{Size: 10, Got: 5}, true},
		{io.ErrUnexpectedEOF, true},
		{&SizeError{Size: 10, Got: 11}, false},
		{&DigestError{}, false},
		{ErrNotFound, false},
		{context.Canceled, false},
		{&os.PathError{Op: "open", Path: "x", Err: os.ErrNotExist}, false},
	} {
		if got := retryable(tc.err); got != tc.want {
			t.Errorf("retryable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestPrefetchStall(t *testing.T) {
	isolateCredentials(t)
	defer func(old time.Duration) { stallTimeout = old }(stallTimeout)
	stallTimeout = 100 * time.Millisecond
	img := randomImage(t, 1024, 1, nil)
	cfg, _ := img.ConfigName()
	var gets atomic.Int32
	_, host := newRegistry(t, func(h http.Handler) http.Handler {
		stall := stallBlobs(make(chan struct{}, 1))(h)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, cfg.String()) {
				h.ServeHTTP(w, r)
				return
			}
			if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
				gets.Add(1)
			}
			stall.ServeHTTP(w, r)
		})
	})
	push(t, host+"/stall:1", img)
	ri, err := Image(ctxBG, host+"/stall:1")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Prefetch(ctxBG, ri, WithTempDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var re *RetryError
	if err := drainBlob(p.Layers()[0]); !errors.Is(err, errStalled) || !errors.As(err, &re) {
		t.Fatalf("err = %v, want a stall after retries", err)
	}
	if n := gets.Load(); n != DefaultRetries+1 {
		t.Errorf("%d attempts, want %d", n, DefaultRetries+1)
	}
}

// TestPrefetchStreams holds the first layer's download after half of its
// blob and reads the blob's first bytes through Compressed meanwhile; once
// released, the rest arrives through the same reader. With a blob cache,
// the blob is in the cache, verified, afterwards; a blob corrupted in
// transit fails the reader with the digest error after its bytes, and
// leaves neither a cached blob nor a download in the cache.
func TestPrefetchStreams(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cache   bool
		corrupt bool
	}{
		{"temp dir", false, false},
		{"blob cache", true, false},
		{"temp dir, corrupt", false, true},
		{"blob cache, corrupt", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newFaultSetup(t, false)
			gate := make(chan struct{})
			if tc.corrupt {
				s.proxy.Inject(faultproxy.Fault{Kind: faultproxy.Corrupt, Path: s.blob})
			} else {
				s.proxy.Inject(faultproxy.Fault{Kind: faultproxy.Hold, Path: s.blob, Gate: gate})
			}
			var opts []Option
			cache := filepath.Join(t.TempDir(), "blobs")
			if tc.cache {
				opts = append(opts, WithBlobCache(cache))
			}
			ri, err := Image(ctxBG, s.ref, opts...)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(ctxBG, time.Minute) // bounds a hang, not a speed
			defer cancel()
			p, err := Prefetch(ctx, ri, append(opts, WithTempDir(t.TempDir()))...)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			l := p.Layers()[0]
			rc, err := l.Compressed()
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			head := make([]byte, 4096)
			if _, err := io.ReadFull(rc, head); err != nil {
				t.Fatalf("reading the first bytes while the rest is held: %v", err)
			}
			close(gate)
			rest, err := io.ReadAll(rc)
			wl, _ := s.img.Layers()
			want := readLayers(t, wl[:1])[0]
			if tc.corrupt {
				var de *DigestError
				if !errors.As(err, &de) || !strings.Contains(err.Error(), "fetch layer "+s.blob[len("/blobs/"):]) {
					t.Fatalf("err = %v, want the layer's *DigestError", err)
				}
				if got := len(head) + len(rest); got != len(want) {
					t.Errorf("read %d bytes before the error, want all %d", got, len(want))
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(append(head, rest...), want) {
					t.Error("the blob read while it downloaded differs from the layer")
				}
			}
			rc.Close()
			if !tc.cache {
				return
			}
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			held := checkCache(t, cache)
			if d := s.blob[len("/blobs/"):]; held[d] == tc.corrupt {
				t.Errorf("blob %s cached: %v, want %v", d, held[d], !tc.corrupt)
			}
		})
	}
}
