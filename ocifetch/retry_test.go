package ocifetch

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/img2ext4/img2ext4/internal/faultproxy"
	"github.com/img2ext4/img2ext4/progress"
)

func TestMain(m *testing.M) {
	// Short waits between attempts keep the tests quick; Retry-After is
	// still honoured as the registry asks.
	retryBackoff.Duration, retryBackoff.Cap = 20*time.Millisecond, 200*time.Millisecond
	os.Exit(m.Run())
}

// faultSetup is an image pushed to a registry behind a fault proxy.
type faultSetup struct {
	img     v1.Image
	proxy   *faultproxy.Proxy
	ref     string
	blob    string // path of the first layer blob
	blob2   string // path of the second layer blob
	config  string // path of the config blob
	layerSz int64
}

func newFaultSetup(t *testing.T, auth bool) *faultSetup {
	t.Helper()
	isolateCredentials(t)
	img := randomImage(t, 64<<10, 2, nil)
	_, upstream := newRegistry(t, nil)
	push(t, upstream+"/flaky:1", img)
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	size, _ := ls[0].Size()
	cfg, _ := img.ConfigName()
	p := faultproxy.New(t, upstream, auth)
	return &faultSetup{
		img: img, proxy: p, ref: p.Host + "/flaky:1",
		blob: "/blobs/" + mustDigest(t, ls[0]).String(), blob2: "/blobs/" + mustDigest(t, ls[1]).String(),
		config: "/blobs/" + cfg.String(), layerSz: size,
	}
}

// pull resolves and prefetches the setup's image through the proxy.
func (s *faultSetup) pull(t *testing.T, opts ...Option) ([]v1.Layer, func(), error) {
	t.Helper()
	ri, err := Image(ctxBG, s.ref, opts...)
	if err != nil {
		return nil, nil, err
	}
	p, err := Prefetch(ctxBG, ri, append(opts, WithTempDir(t.TempDir()))...)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range p.Layers() {
		if err := drainBlob(l); err != nil {
			p.Close()
			return nil, nil, err
		}
	}
	return p.Layers(), func() { p.Close() }, nil
}

// gapAfter returns the time between the end of the first answer to a
// request on path with the given fault and the arrival of the next request
// on path, as the proxy saw them.
func gapAfter(t *testing.T, hits []faultproxy.Hit, path, fault string) time.Duration {
	t.Helper()
	h, n := faultThenNext(t, hits, path, fault)
	return n.Arrived.Sub(h.Done)
}

// faultThenNext returns the first request on path answered with fault and the
// next request on path.
func faultThenNext(t *testing.T, hits []faultproxy.Hit, path, fault string) (faulted, next faultproxy.Hit) {
	t.Helper()
	for i, h := range hits {
		if !strings.HasSuffix(h.Path, path) || h.Fault != fault {
			continue
		}
		for _, n := range hits[i+1:] {
			if strings.HasSuffix(n.Path, path) {
				return h, n
			}
		}
	}
	t.Fatalf("no request on %s after the %s fault", path, fault)
	return
}

func TestRetryFaults(t *testing.T) {
	type check func(t *testing.T, s *faultSetup, hits []faultproxy.Hit)
	var retryDate time.Time // the Retry-After date of "manifest 429 Retry-After date"
	// resumed checks that the cut download of the first blob went on from
	// the half that had arrived.
	resumed := func(t *testing.T, s *faultSetup, hits []faultproxy.Hit) {
		want := fmt.Sprintf("bytes=%d-%d", s.layerSz/2, s.layerSz-1)
		for _, h := range hits {
			if strings.HasSuffix(h.Path, s.blob) && h.Range == want && h.Fault == "" {
				return
			}
		}
		t.Errorf("no resumed request %q on %s: %+v", want, s.blob, hits)
	}
	for _, tc := range []struct {
		name   string
		auth   bool
		faults func(s *faultSetup) []faultproxy.Fault
		check  check
	}{
		{"blob 500 twice", false, func(s *faultSetup) []faultproxy.Fault {
			return []faultproxy.Fault{{Kind: faultproxy.Status, Path: s.blob, Code: 500, Times: 2}}
		}, nil},
		{"manifest 503", false, func(s *faultSetup) []faultproxy.Fault {
			return []faultproxy.Fault{{Kind: faultproxy.Status, Path: "/manifests/", Code: 503}}
		}, nil},
		{"config 502", false, func(s *faultSetup) []faultproxy.Fault {
			return []faultproxy.Fault{{Kind: faultproxy.Status, Path: s.config, Code: 502}}
		}, nil},
		{"blob 429 Retry-After seconds", false, func(s *faultSetup) []faultproxy.Fault {
			return []faultproxy.Fault{{Kind: faultproxy.Status, Path: s.blob, Code: 429, RetryAfter: "1"}}
		}, func(t *testing.T, s *faultSetup, hits []faultproxy.Hit) {
			if gap := gapAfter(t, hits, s.blob, "status"); gap < time.Second {
				t.Errorf("retried %s after the 429 asking for 1s", gap)
			}
		}},
		{"manifest 429 Retry-After date", false, func(s *faultSetup) []faultproxy.Fault {
			// An HTTP date two seconds ahead, truncated to the second.
			at := time.Now().Add(2 * time.Second).UTC().Format(http.TimeFormat)
			retryDate, _ = http.ParseTime(at)
			return []faultproxy.Fault{{Kind: faultproxy.Status, Path: "/manifests/", Code: 429, RetryAfter: at}}
		}, func(t *testing.T, s *faultSetup, hits []faultproxy.Hit) {
			// The retry comes no earlier than the date, however late the first request
			// arrived on a loaded machine.
			_, retry := faultThenNext(t, hits, pathOf(hits, "/manifests/"), "status")
			if retried := retry.Arrived; retried.Before(retryDate.Add(-10 * time.Millisecond)) {
				t.Errorf("retried at %s, before the 429's Retry-After date %s", retried.UTC().Format(time.StampMilli), retryDate.Format(time.StampMilli))
			}
		}},
		{"blob short body", false, func(s *faultSetup) []faultproxy.Fault {
			return []faultproxy.Fault{{Kind: faultproxy.ShortBody, Path: s.blob}}
		}, resumed},
		{"blob reset mid-body", false, func(s *faultSetup) []faultproxy.Fault {
			return []faultproxy.Fault{{Kind: faultproxy.ResetBody, Path: s.blob}}
		}, resumed},
		{"blob reset before answer", false, func(s *faultSetup) []faultproxy.Fault {
			return []faultproxy.Fault{{Kind: faultproxy.Reset, Path: s.blob}}
		}, nil},
		{"manifest short body", false, func(s *faultSetup) []faultproxy.Fault {
			return []faultproxy.Fault{{Kind: faultproxy.ShortBody, Path: "/manifests/"}}
		}, nil},
		{"token 503", true, func(s *faultSetup) []faultproxy.Fault {
			return []faultproxy.Fault{{Kind: faultproxy.Status, Path: "/token", Code: 503}}
		}, nil},
		{"all combined", true, func(s *faultSetup) []faultproxy.Fault {
			return []faultproxy.Fault{
				{Kind: faultproxy.Status, Path: "/token", Code: 503},
				{Kind: faultproxy.Status, Path: "/manifests/", Code: 503},
				{Kind: faultproxy.Status, Path: s.config, Code: 500},
				{Kind: faultproxy.Status, Path: s.blob, Code: 500, Times: 2},
				{Kind: faultproxy.Status, Path: s.blob, Code: 429, RetryAfter: "1"},
				{Kind: faultproxy.ShortBody, Path: s.blob},
				{Kind: faultproxy.ResetBody, Path: s.blob2},
				{Kind: faultproxy.Reset, Path: s.blob2},
			}
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newFaultSetup(t, tc.auth)
			s.proxy.Inject(tc.faults(s)...)
			var mu sync.Mutex
			var events []progress.Event
			layers, done, err := s.pull(t, WithProgress(func(ev progress.Event) {
				mu.Lock()
				events = append(events, ev)
				mu.Unlock()
			}))
			if err != nil {
				t.Fatalf("pull through faults: %v", err)
			}
			defer done()
			sameLayers(t, s.img, layers)
			if n := s.proxy.Pending(); n != 0 {
				t.Errorf("%d faults never injected", n)
			}
			hits := s.proxy.Hits()
			if tc.check != nil {
				tc.check(t, s, hits)
			}
			// Every retry the client made shows in progress.
			mu.Lock()
			defer mu.Unlock()
			retried := 0
			for _, ev := range events {
				if ev.Retries > 0 && ev.Retry != "" {
					retried++
				}
			}
			if retried == 0 && tc.name != "blob reset before answer" {
				// A reset before any answer may be absorbed by net/http's own retry of idempotent requests.
				t.Errorf("no progress event reported a retry: %+v", events)
			}
		})
	}
}

// pathOf returns the path of the first hit containing sub.
func pathOf(hits []faultproxy.Hit, sub string) string {
	for _, h := range hits {
		if strings.Contains(h.Path, sub) {
			return h.Path
		}
	}
	return sub
}

func TestRetryFinal(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault func(s *faultSetup) faultproxy.Fault
		path  func(s *faultSetup) string
		is    error
		msg   string
	}{
		{"blob 404", func(s *faultSetup) faultproxy.Fault {
			return faultproxy.Fault{Kind: faultproxy.Status, Path: s.blob, Code: 404}
		}, func(s *faultSetup) string { return s.blob }, ErrNotFound, "HTTP 404 Not Found is final"},
		{"manifest 401", func(s *faultSetup) faultproxy.Fault {
			return faultproxy.Fault{Kind: faultproxy.Status, Path: "/manifests/", Code: 401}
		}, func(s *faultSetup) string { return "/manifests/" }, ErrUnauthorized, "HTTP 401 Unauthorized is final"},
		{"config 403", func(s *faultSetup) faultproxy.Fault {
			return faultproxy.Fault{Kind: faultproxy.Status, Path: s.config, Code: 403}
		}, func(s *faultSetup) string { return s.config }, ErrUnauthorized, "HTTP 403 Forbidden is final"},
		{"blob digest mismatch", func(s *faultSetup) faultproxy.Fault {
			return faultproxy.Fault{Kind: faultproxy.Corrupt, Path: s.blob}
		}, func(s *faultSetup) string { return s.blob }, ErrDigestMismatch, "digest mismatch"},
		{"manifest digest mismatch", func(s *faultSetup) faultproxy.Fault {
			return faultproxy.Fault{Kind: faultproxy.Corrupt, Path: "/manifests/"}
		}, func(s *faultSetup) string { return "/manifests/" }, ErrDigestMismatch, "a digest mismatch is final"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newFaultSetup(t, false)
			s.proxy.Inject(tc.fault(s))
			_, done, err := s.pull(t)
			if err == nil {
				done()
				t.Fatal("pull succeeded")
			}
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("err = %v, want %v saying %q", err, tc.is, tc.msg)
			}
			var re *RetryError
			if errors.As(err, &re) {
				t.Errorf("a final answer was retried: %v", err)
			}
			if n := s.proxy.Count(http.MethodGet, tc.path(s)); n != 1 {
				t.Errorf("%d GETs of %s, want 1", n, tc.path(s))
			}
		})
	}
}

func TestRetryBudget(t *testing.T) {
	t.Run("retries", func(t *testing.T) {
		s := newFaultSetup(t, false)
		s.proxy.Inject(faultproxy.Fault{Kind: faultproxy.Status, Path: "/manifests/", Code: 503, Times: 100})
		_, _, err := s.pull(t, WithRetries(2))
		var re *RetryError
		if !errors.As(err, &re) || len(re.Attempts) != 3 || !strings.Contains(err.Error(), "2 retries in a row") {
			t.Fatalf("err = %v, want a RetryError of 3 attempts", err)
		}
		for i := 1; i <= 3; i++ {
			if !strings.Contains(err.Error(), fmt.Sprintf("attempt %d: ", i)) || !strings.Contains(err.Error(), "503") {
				t.Errorf("error does not list attempt %d: %v", i, err)
			}
		}
		if n := s.proxy.Count(http.MethodGet, "/manifests/"); n != 3 {
			t.Errorf("%d manifest GETs, want 3", n)
		}
	})
	t.Run("Retry-After beyond the retry time", func(t *testing.T) {
		s := newFaultSetup(t, false)
		s.proxy.Inject(faultproxy.Fault{Kind: faultproxy.Status, Path: s.blob, Code: 429, RetryAfter: "3600"})
		_, _, err := s.pull(t, WithRetryMaxTime(time.Minute))
		if err == nil || !strings.Contains(err.Error(), "asked to retry after 1h0m0s, beyond the retry time of 1m0s") {
			t.Fatalf("err = %v, want the Retry-After refused", err)
		}
		if n := s.proxy.Count(http.MethodGet, s.blob); n != 1 {
			t.Errorf("%d blob GETs, want 1", n)
		}
	})
	t.Run("no retries", func(t *testing.T) {
		s := newFaultSetup(t, false)
		s.proxy.Inject(faultproxy.Fault{Kind: faultproxy.Status, Path: s.blob, Code: 500})
		_, _, err := s.pull(t, WithRetries(0))
		if err == nil || !strings.Contains(err.Error(), "0 retries in a row; not retried") {
			t.Fatalf("err = %v, want a 500 not retried", err)
		}
	})
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"1", time.Second},
		{" 120 ", 2 * time.Minute},
		{"-3", 0},
		{"soon", 0},
		{"99999999999999", maxRetryAfter},
		{"Mon, 30 Nov 2026 12:00:05 GMT", 5 * time.Second},
		{"Mon, 30 Nov 2026 11:59:00 GMT", 0},
		{"Monday, 30-Nov-26 12:01:00 GMT", time.Minute},
	} {
		if got := parseRetryAfter(tc.in, now); got != tc.want {
			t.Errorf("parseRetryAfter(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}
