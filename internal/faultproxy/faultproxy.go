// Package faultproxy is a test helper: a reverse proxy on loopback, put in
// front of a registry (go-containerregistry's pkg/registry under httptest),
// that injects the faults production registries and their proxies show —
// temporary statuses with or without Retry-After, connection resets, bodies
// cut short of their declared Content-Length — and records every request it
// saw, with when it arrived and when its answer ended, so that tests count
// attempts and time the gaps between them at the proxy.
//
// It can also put a bearer-token challenge in front of the registry, so
// that token requests go through it and can be faulted too.
package faultproxy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Kind is a kind of fault.
type Kind int

const (
	// Status answers with Fault.Code (and Fault.RetryAfter) instead of forwarding.
	Status Kind = iota
	// Reset resets the connection (TCP RST) before answering.
	Reset
	// ShortBody forwards the answer with its full Content-Length but sends
	// only half of its body, then closes the connection.
	ShortBody
	// ResetBody forwards the answer's headers and half of its body, then
	// resets the connection.
	ResetBody
	// Corrupt forwards the answer with one byte of its body flipped.
	Corrupt
	// Hold forwards the answer's headers and half of its body, waits for
	// Fault.Gate, then sends the rest: a download that can be held in the
	// middle until the test has seen what it wants.
	Hold
)

func (k Kind) String() string {
	switch k {
	case Status:
		return "status"
	case Reset:
		return "reset"
	case ShortBody:
		return "short-body"
	case ResetBody:
		return "reset-body"
	case Corrupt:
		return "corrupt"
	case Hold:
		return "hold"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Fault is a fault injected into the requests it matches.
type Fault struct {
	// Kind is what goes wrong.
	Kind Kind
	// Path selects the requests: those whose URL path contains it, such as
	// "/manifests/", "/blobs/sha256:…" or "/token"; empty matches any.
	Path string
	// Code is the status a Status fault answers with.
	Code int
	// RetryAfter is the Retry-After header of a Status fault, if any.
	RetryAfter string
	// Times is how many matching requests in a row get the fault; 0 means 1.
	Times int
	// Gate, when not nil, is waited for after the first half of the body
	// has been sent and flushed, before a Hold fault sends the rest and
	// before a ShortBody or ResetBody fault cuts the answer; the wait also
	// ends when the client goes away. A Hold fault needs a Gate.
	Gate <-chan struct{}
}

// Hit is one request the proxy saw.
type Hit struct {
	// Method, Path and Range are those of the request.
	Method, Path, Range string
	// Fault is the fault injected, or empty when the request was forwarded.
	Fault string
	// Status is the status answered, or 0 for a reset before answering.
	Status int
	// Arrived and Done are when the request arrived and when its answer ended.
	Arrived, Done time.Time
}

// Proxy is a fault-injecting reverse proxy.
type Proxy struct {
	// Host is the proxy's host:port, to use in references.
	Host     string
	upstream string
	auth     bool
	client   *http.Client

	mu     sync.Mutex
	faults []*Fault
	hits   []Hit
}

// token is the bearer token the proxy hands out when it asks for one.
const token = "faultproxy-token"

// New starts a proxy on loopback in front of the registry at upstream
// (host:port, plain HTTP). With auth, it answers requests without its
// bearer token with a challenge pointing to its own /token endpoint.
// The proxy stops when the test ends.
func New(t testing.TB, upstream string, auth bool) *Proxy {
	t.Helper()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	p := &Proxy{upstream: upstream, auth: auth, client: &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
	srv := httptest.NewServer(p)
	t.Cleanup(func() {
		srv.Close()
		tr.CloseIdleConnections()
	})
	p.Host = strings.TrimPrefix(srv.URL, "http://")
	return p
}

// Inject queues faults. A request takes the first queued fault that
// matches it; a fault is dropped once used Times times.
func (p *Proxy) Inject(faults ...Fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range faults {
		if f.Times <= 0 {
			f.Times = 1
		}
		p.faults = append(p.faults, &f)
	}
}

// Pending returns how many injections are still queued.
func (p *Proxy) Pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, f := range p.faults {
		n += f.Times
	}
	return n
}

// Hits returns the requests seen so far, in order of arrival.
func (p *Proxy) Hits() []Hit {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Hit(nil), p.hits...)
}

// Count returns how many requests with method whose path contains path the
// proxy saw.
func (p *Proxy) Count(method, path string) int {
	n := 0
	for _, h := range p.Hits() {
		if h.Method == method && strings.Contains(h.Path, path) {
			n++
		}
	}
	return n
}

// take removes and returns the fault for r, if any.
func (p *Proxy) take(r *http.Request) *Fault {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, f := range p.faults {
		if strings.Contains(r.URL.Path, f.Path) {
			f.Times--
			if f.Times == 0 {
				p.faults = append(p.faults[:i], p.faults[i+1:]...)
			}
			c := *f
			return &c
		}
	}
	return nil
}

func (p *Proxy) record(h Hit) {
	h.Done = time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hits = append(p.hits, h)
}

// ServeHTTP implements http.Handler.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hit := Hit{Method: r.Method, Path: r.URL.Path, Range: r.Header.Get("Range"), Arrived: time.Now()}
	f := p.take(r)
	if f != nil {
		hit.Fault = f.Kind.String()
		switch f.Kind {
		case Status:
			if f.RetryAfter != "" {
				w.Header().Set("Retry-After", f.RetryAfter)
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(f.Code)
			fmt.Fprintf(w, `{"errors":[{"code":"UNAVAILABLE","message":"faultproxy: injected %d"}]}`, f.Code)
			hit.Status = f.Code
			p.record(hit)
			return
		case Reset:
			reset(w)
			p.record(hit)
			return
		}
	}
	status, body, hdr := p.answer(r)
	for k, v := range hdr {
		w.Header()[k] = v
	}
	hit.Status = status
	if r.Method == http.MethodHead {
		w.WriteHeader(status)
		p.record(hit)
		return
	}
	if f == nil || len(body) < 2 {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(status)
		w.Write(body)
		p.record(hit)
		return
	}
	// ShortBody, ResetBody, Hold and Corrupt.
	if f.Kind == Corrupt {
		body = bytes.Clone(body)
		body[len(body)/2] ^= 0xff
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(status)
		w.Write(body)
		p.record(hit)
		return
	}
	// Promise it all, send half.
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body[:len(body)/2])
	if f.Gate != nil {
		http.NewResponseController(w).Flush()
		select {
		case <-f.Gate:
		case <-r.Context().Done():
		}
	}
	if f.Kind == Hold {
		w.Write(body[len(body)/2:])
		p.record(hit)
		return
	}
	if f.Kind == ResetBody {
		reset(w)
	}
	// Returning short of the Content-Length makes the server close the connection.
	p.record(hit)
}

// answer forwards r upstream, or answers it itself for the token
// challenge, and returns the whole answer.
func (p *Proxy) answer(r *http.Request) (int, []byte, http.Header) {
	if p.auth {
		if r.URL.Path == "/token" {
			b, _ := json.Marshal(map[string]string{"token": token, "access_token": token})
			return http.StatusOK, b, http.Header{"Content-Type": {"application/json"}}
		}
		if r.Header.Get("Authorization") != "Bearer "+token {
			h := http.Header{"Www-Authenticate": {fmt.Sprintf(`Bearer realm="http://%s/token",service="faultproxy"`, r.Host)}}
			return http.StatusUnauthorized, []byte(`{"errors":[{"code":"UNAUTHORIZED"}]}`), h
		}
	}
	out, err := http.NewRequestWithContext(r.Context(), r.Method, "http://"+p.upstream+r.URL.RequestURI(), r.Body)
	if err != nil {
		return http.StatusBadGateway, []byte(err.Error()), nil
	}
	for _, k := range []string{"Accept", "Range", "Content-Type"} {
		if v := r.Header.Values(k); len(v) > 0 {
			out.Header[k] = v
		}
	}
	out.ContentLength = r.ContentLength
	resp, err := p.client.Do(out)
	if err != nil {
		return http.StatusBadGateway, []byte(err.Error()), nil
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, resp.Body); err != nil {
		return http.StatusBadGateway, []byte(err.Error()), nil
	}
	if r.Method != http.MethodHead {
		resp.Header.Del("Content-Length")
	}
	if loc := resp.Header.Get("Location"); strings.HasPrefix(loc, "http://"+p.upstream) {
		resp.Header.Set("Location", "http://"+r.Host+strings.TrimPrefix(loc, "http://"+p.upstream))
	}
	return resp.StatusCode, buf.Bytes(), resp.Header
}

// reset hijacks the connection of w and closes it with a TCP RST.
func reset(w http.ResponseWriter) {
	rc := http.NewResponseController(w)
	rc.Flush()
	conn, _, err := rc.Hijack()
	if err != nil {
		return // the server closes the connection when the handler returns
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	conn.Close()
}
