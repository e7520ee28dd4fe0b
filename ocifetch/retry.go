package ocifetch

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Retry defaults; see [WithRetries] and [WithRetryMaxTime].
const (
	// DefaultRetries is how many times in a row a failed registry request is
	// retried unless [WithRetries] says otherwise.
	DefaultRetries = 5
	// DefaultRetryMaxTime is how long a registry request may keep failing and
	// waiting before it gives up, unless [WithRetryMaxTime] says otherwise.
	DefaultRetryMaxTime = 2 * time.Minute
)

// retryBackoff is the schedule of waits between attempts: 250 ms, doubled
// after each failure up to 8 s, each with up to half of it again added at
// random. A variable so that tests can shorten it.
var retryBackoff = transport.Backoff{Duration: 250 * time.Millisecond, Factor: 2, Jitter: 0.5, Steps: 1 << 30, Cap: 8 * time.Second}

// maxRetryAfter caps the Retry-After a registry may ask for; longer waits
// are refused by the retry time anyway.
const maxRetryAfter = 24 * time.Hour

// retryPolicy bounds the retries of one registry request.
type retryPolicy struct {
	retries int           // retries in a row without new data
	maxTime time.Duration // time failing and waiting since the last new data
}

// Attempt is one failed try of a registry request, as listed by [RetryError]
// and reported to [WithProgress].
type Attempt struct {
	// Err is why the attempt failed.
	Err error
	// Wait is how long was waited before the next attempt; zero for the last.
	Wait time.Duration
}

// RetryError reports a registry request that failed after more than one
// attempt, either because the retries or the retry time ran out or because a
// later attempt failed for good. It unwraps to the last attempt's error, so
// [errors.Is] still finds [ErrNotFound], [ErrDigestMismatch] and the like.
type RetryError struct {
	// Attempts lists the failed attempts in order; the last is the final one.
	Attempts []Attempt
	// Reason says why no further attempt was made.
	Reason string
}

// maxListedAttempts is how many attempts a [RetryError] message lists.
const maxListedAttempts = 8

// Error implements error.
func (e *RetryError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "ocifetch: gave up after %d attempts (%s)", len(e.Attempts), e.Reason)
	first := 0
	if len(e.Attempts) > maxListedAttempts {
		first = len(e.Attempts) - maxListedAttempts
		fmt.Fprintf(&b, "; %d earlier attempts not shown", first)
	}
	for i := first; i < len(e.Attempts); i++ {
		a := e.Attempts[i]
		fmt.Fprintf(&b, "; attempt %d: %v", i+1, a.Err)
		if a.Wait > 0 {
			fmt.Fprintf(&b, " (waited %s)", a.Wait.Round(time.Millisecond))
		}
	}
	return b.String()
}

// Unwrap returns the last attempt's error.
func (e *RetryError) Unwrap() error {
	if len(e.Attempts) == 0 {
		return nil
	}
	return e.Attempts[len(e.Attempts)-1].Err
}

// retryState follows the attempts of one logical registry request: a
// manifest or token fetch, or one blob download across its resumptions. It
// is used by one goroutine at a time.
type retryState struct {
	pol        retryPolicy
	notify     func(Attempt) // may be nil
	backoff    transport.Backoff
	since      time.Time // start of the current run of failures
	inRow      int       // failures since the last new data
	progressed bool      // new data since the last failure
	attempts   []Attempt
}

func newRetryState(pol retryPolicy, notify func(Attempt)) *retryState {
	return &retryState{pol: pol, notify: notify, backoff: retryBackoff, since: time.Now()}
}

// fail records a failed attempt. It returns how long to wait before the next
// one, or, when err is not worth retrying or the budget is spent, the error
// to give up with. retryAfter is the registry's Retry-After, or zero.
func (s *retryState) fail(err error, retryAfter time.Duration) (time.Duration, error) {
	now := time.Now()
	if s.progressed {
		// New data arrived since the last failure: the budget starts afresh.
		s.progressed, s.inRow, s.since, s.backoff = false, 0, now, retryBackoff
	}
	if !retryable(err) {
		return 0, s.giveUp(err, notRetried(err))
	}
	if s.inRow >= s.pol.retries {
		return 0, s.giveUp(err, fmt.Sprintf("%d retries in a row", s.pol.retries))
	}
	wait := s.backoff.Step()
	if retryAfter > wait {
		wait = retryAfter
	}
	if spent := now.Sub(s.since); spent+wait > s.pol.maxTime {
		reason := fmt.Sprintf("the retry time of %s would be exceeded", s.pol.maxTime)
		if retryAfter > 0 {
			reason = fmt.Sprintf("the registry asked to retry after %s, beyond the retry time of %s", retryAfter, s.pol.maxTime)
		}
		return 0, s.giveUp(err, reason)
	}
	s.inRow++
	a := Attempt{Err: err, Wait: wait}
	s.attempts = append(s.attempts, a)
	if s.notify != nil {
		s.notify(a)
	}
	return wait, nil
}

// final records a failed attempt whose error is final whatever it is, such
// as a status the transport chose not to retry, and returns the error to
// give up with.
func (s *retryState) final(err error) error {
	return s.giveUp(err, notRetried(err))
}

// giveUp returns the final error: err itself, marked as not retried, when it
// was the first attempt, or a [*RetryError] listing every attempt.
func (s *retryState) giveUp(err error, reason string) error {
	if len(s.attempts) == 0 {
		if strings.HasPrefix(reason, "not retried") {
			return fmt.Errorf("%w (%s)", err, reason)
		}
		return fmt.Errorf("%w (%s; not retried)", err, reason)
	}
	s.attempts = append(s.attempts, Attempt{Err: err})
	return &RetryError{Attempts: s.attempts, Reason: reason}
}

// notRetried says why err is final, for messages.
func notRetried(err error) string {
	var terr *transport.Error
	switch {
	case errors.As(err, &terr):
		return fmt.Sprintf("not retried: HTTP %d %s is final", terr.StatusCode, http.StatusText(terr.StatusCode))
	case errors.Is(err, ErrDigestMismatch):
		return "not retried: a digest mismatch is final"
	case errors.Is(err, ErrSizeMismatch):
		return "not retried: a blob longer than its descriptor is final"
	}
	return "not retried"
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}

// retryStatus reports whether an HTTP status is worth retrying: the
// statuses go-containerregistry's transport treats as temporary (408, 429,
// 500, 502, 503, 504).
func retryStatus(code int) bool {
	switch code {
	case http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
		http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// errBadLength reports a response whose Content-Length differs from what
// the descriptor and the requested range promise; such answers come from
// broken proxies and are retried.
var errBadLength = errors.New("ocifetch: response length differs from the descriptor")

// retryable reports whether a failed attempt may succeed if tried again:
// temporary HTTP statuses, connection resets and refusals, timeouts, stalls,
// early ends of a body and length mismatches. Verification failures,
// missing blobs, refused credentials, TLS and certificate errors, local
// errors and cancellation are final.
func retryable(err error) bool {
	var terr *transport.Error
	if errors.As(err, &terr) {
		return retryStatus(terr.StatusCode)
	}
	if errors.Is(err, errBadLength) {
		return true // before ErrSizeMismatch, which it wraps
	}
	for _, final := range []error{ErrDigestMismatch, ErrSizeMismatch, ErrNotFound, ErrUnauthorized,
		ErrUnsupportedMediaType, ErrLimit, context.Canceled, context.DeadlineExceeded} {
		if errors.Is(err, final) {
			return false
		}
	}
	var (
		certErr    *tls.CertificateVerificationError
		unknownCA  x509.UnknownAuthorityError
		hostErr    x509.HostnameError
		invalidErr x509.CertificateInvalidError
		recordErr  tls.RecordHeaderError
		dnsErr     *net.DNSError
		netErr     net.Error
	)
	switch {
	case errors.As(err, &certErr), errors.As(err, &unknownCA), errors.As(err, &hostErr),
		errors.As(err, &invalidErr), errors.As(err, &recordErr):
		return false
	case errors.Is(err, ErrTruncated), errors.Is(err, errBadLength), errors.Is(err, errStalled),
		errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.ECONNABORTED), errors.Is(err, syscall.EPIPE),
		errors.Is(err, syscall.ETIMEDOUT):
		return true
	case errors.As(err, &dnsErr):
		return dnsErr.IsTemporary || dnsErr.IsTimeout
	case errors.As(err, &netErr):
		return netErr.Timeout()
	}
	return false
}

// parseRetryAfter reads a Retry-After header: delay seconds or an HTTP date.
// It returns zero for a missing, malformed or past value.
func parseRetryAfter(h string, now time.Time) time.Duration {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0
	}
	if n, err := strconv.ParseInt(h, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		if n > int64(maxRetryAfter/time.Second) {
			return maxRetryAfter
		}
		return time.Duration(n) * time.Second
	}
	t, err := http.ParseTime(h)
	if err != nil {
		return 0
	}
	return min(max(t.Sub(now), 0), maxRetryAfter)
}

// retryStateKey carries the *retryState of a request in its context.
type retryStateKey struct{}

// retryNotifyKey carries a func(Attempt) that hears of retries.
type retryNotifyKey struct{}

func withRetryState(ctx context.Context, s *retryState) context.Context {
	return context.WithValue(ctx, retryStateKey{}, s)
}

// withRetryNotify makes the registry requests made under ctx report their
// retries to fn.
func withRetryNotify(ctx context.Context, fn func(Attempt)) context.Context {
	return context.WithValue(ctx, retryNotifyKey{}, fn)
}

func retryNotifyFrom(ctx context.Context) func(Attempt) {
	fn, _ := ctx.Value(retryNotifyKey{}).(func(Attempt))
	return fn
}

// retryTransport retries the round trips of every registry request (ping,
// token, manifest and blob) that fail with a connection error or a
// temporary status, honouring Retry-After. A request whose context carries
// a *retryState shares its budget with the retries its caller makes after
// the headers (a body cut short); others get a budget of their own.
type retryTransport struct {
	inner http.RoundTripper
	pol   retryPolicy
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	st, _ := ctx.Value(retryStateKey{}).(*retryState)
	if st == nil {
		st = newRetryState(t.pol, retryNotifyFrom(ctx))
	}
	for {
		resp, err := t.inner.RoundTrip(req)
		var after time.Duration
		if err == nil {
			if !retryStatus(resp.StatusCode) {
				return resp, nil
			}
			after = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
			err = transport.CheckError(resp)
			resp.Body.Close()
		}
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
			return nil, err // the body cannot be sent again
		}
		wait, gerr := st.fail(err, after)
		if gerr != nil {
			return nil, gerr
		}
		if err := sleep(ctx, wait); err != nil {
			return nil, err
		}
		if req.GetBody != nil {
			body, err := req.GetBody()
			if err != nil {
				return nil, err
			}
			req = req.Clone(ctx)
			req.Body = body
		}
	}
}
