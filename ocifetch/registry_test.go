package ocifetch

import (
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/img2ext4/img2ext4/progress"
)

func TestRegistryPull(t *testing.T) {
	isolateCredentials(t)
	_, host := newRegistry(t, nil)
	want := randomImage(t, 1024, 3, nil)
	push(t, host+"/test/img:v1", want)
	d := mustDigest(t, want)

	for _, ref := range []string{
		host + "/test/img:v1",
		"docker://" + host + "/test/img:v1",
		"http://" + host + "/test/img:v1",
		host + "/test/img@" + d.String(),
	} {
		t.Run(ref, func(t *testing.T) {
			img, err := Image(ctxBG, ref)
			if err != nil {
				t.Fatal(err)
			}
			if got := mustDigest(t, img); got != d {
				t.Errorf("digest %s, want %s", got, d)
			}
			wantCfg, _ := want.RawConfigFile()
			gotCfg, _ := img.RawConfigFile()
			if string(wantCfg) != string(gotCfg) {
				t.Error("config differs")
			}
			layers, err := img.Layers()
			if err != nil {
				t.Fatal(err)
			}
			sameLayers(t, want, layers)
			for i, l := range layers {
				wl, _ := want.Layers()
				wd, _ := wl[i].DiffID()
				if gd, _ := l.DiffID(); gd != wd {
					t.Errorf("layer %d diffID %s, want %s", i, gd, wd)
				}
			}
		})
	}

	t.Run("missing tag", func(t *testing.T) {
		_, err := Image(ctxBG, host+"/test/img:nope")
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("err = %v, want ErrNotFound", err)
		}
	})
}

func TestIndexPlatform(t *testing.T) {
	isolateCredentials(t)
	_, host := newRegistry(t, nil)
	platforms := []v1.Platform{
		{OS: "linux", Architecture: "amd64"},
		{OS: "linux", Architecture: "arm64", Variant: "v8"},
		{OS: "linux", Architecture: "arm", Variant: "v6"},
		{OS: "unknown", Architecture: "unknown"},
	}
	idx, imgs := multiPlatformIndex(t, platforms...)
	ref := host + "/multi:latest"
	r, _ := parseReference(ref)
	if err := remoteWriteIndex(r, idx); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		want v1.Platform
		img  int // index into imgs, -1 for no match
	}{
		{"amd64", v1.Platform{OS: "linux", Architecture: "amd64"}, 0},
		{"arm64 no variant", v1.Platform{OS: "linux", Architecture: "arm64"}, 1},
		{"arm64 v8", v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}, 1},
		{"arm v7 takes v6", v1.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}, 2},
		{"arm v5 refuses v6", v1.Platform{OS: "linux", Architecture: "arm", Variant: "v5"}, -1},
		{"s390x", v1.Platform{OS: "linux", Architecture: "s390x"}, -1},
		{"windows", v1.Platform{OS: "windows", Architecture: "amd64"}, -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			img, err := Image(ctxBG, ref, WithPlatform(tc.want))
			if tc.img < 0 {
				var pe *PlatformError
				if !errors.As(err, &pe) || !errors.Is(err, ErrPlatform) {
					t.Fatalf("err = %v, want *PlatformError", err)
				}
				for _, s := range []string{"linux/amd64", "linux/arm64/v8", "linux/arm/v6"} {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not list %s", err, s)
					}
				}
				if strings.Contains(err.Error(), "unknown/unknown") {
					t.Errorf("error %q lists the attestation entry", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got, want := mustDigest(t, img), mustDigest(t, imgs[tc.img]); got != want {
				t.Errorf("picked %s, want %s", got, want)
			}
		})
	}
}

func TestPlatformMismatch(t *testing.T) {
	isolateCredentials(t)
	_, host := newRegistry(t, nil)
	push(t, host+"/arm:1", randomImage(t, 64, 1, &v1.Platform{OS: "linux", Architecture: "arm64"}))
	amd64 := WithPlatform(v1.Platform{OS: "linux", Architecture: "amd64"})

	_, err := Image(ctxBG, host+"/arm:1", amd64)
	var pe *PlatformError
	if !errors.As(err, &pe) || pe.Index || !strings.Contains(err.Error(), "linux/arm64") {
		t.Fatalf("err = %v, want *PlatformError naming linux/arm64", err)
	}
	if _, err := Image(ctxBG, host+"/arm:1", amd64, WithAllowPlatformMismatch(true)); err != nil {
		t.Fatalf("with mismatch allowed: %v", err)
	}
	if _, err := Image(ctxBG, host+"/arm:1", WithPlatform(v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"})); err != nil {
		t.Fatalf("arm64 image for arm64/v8: %v", err)
	}
}

// basicAuth demands user:pass on every request.
func basicAuth(user, pass string) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			u, p, ok := r.BasicAuth()
			if !ok || u != user || p != pass {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
}

// bearerAuth serves /token, issuing a token for user:pass, and demands that
// token on /v2/ requests.
func bearerAuth(user, pass string) func(http.Handler) http.Handler {
	const token = "tok-3f9a"
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/token" {
				u, p, ok := r.BasicAuth()
				if !ok || u != user || p != pass {
					http.Error(w, `{"details":"bad credentials"}`, http.StatusUnauthorized)
					return
				}
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprintf(w, `{"token":%q,"expires_in":300}`, token)
				return
			}
			if r.Header.Get("Authorization") != "Bearer "+token {
				w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="http://%s/token",service="test"`, r.Host))
				http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"token required"}]}`, http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
}

// seedAuthRegistry pushes an image through an unauthenticated view of the
// same storage, returning the authenticated registry's host.
func seedAuthRegistry(t *testing.T, wrap func(http.Handler) http.Handler) (string, v1.Image) {
	t.Helper()
	var inner http.Handler
	open, openHost := newRegistry(t, func(h http.Handler) http.Handler { inner = h; return h })
	_ = open
	img := randomImage(t, 512, 2, nil)
	push(t, openHost+"/private/img:v1", img)
	srv := httptest.NewServer(wrap(inner))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), img
}

func TestAuth(t *testing.T) {
	const user, pass = "alice", "s3cret-Pa55word"
	for _, mode := range []struct {
		name string
		wrap func(string, string) func(http.Handler) http.Handler
	}{{"basic", basicAuth}, {"bearer", bearerAuth}} {
		t.Run(mode.name, func(t *testing.T) {
			isolateCredentials(t)
			host, want := seedAuthRegistry(t, mode.wrap(user, pass))
			ref := host + "/private/img:v1"

			img, err := Image(ctxBG, ref, WithBasicAuth(user, pass))
			if err != nil {
				t.Fatalf("good credentials: %v", err)
			}
			layers, _ := img.Layers()
			sameLayers(t, want, layers)

			_, err = Image(ctxBG, ref, WithBasicAuth(user, "wrong-"+pass))
			if err == nil {
				t.Fatal("wrong password accepted")
			}
			if strings.Contains(err.Error(), pass) {
				t.Fatalf("error leaks the password: %v", err)
			}
			if !errors.Is(err, ErrUnauthorized) {
				t.Errorf("wrong password: err = %v, want ErrUnauthorized", err)
			}
			if _, err := Image(ctxBG, ref); !errors.Is(err, ErrUnauthorized) {
				t.Fatalf("anonymous access: err = %v, want ErrUnauthorized", err)
			}
		})
	}
}

func TestAuthFiles(t *testing.T) {
	const user, pass = "bob", "hunter2-long-secret"
	authJSON := func(key string) []byte {
		b, _ := json.Marshal(map[string]any{"auths": map[string]any{
			key: map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))},
		}})
		return b
	}
	for _, mode := range []struct {
		name string
		wrap func(string, string) func(http.Handler) http.Handler
	}{{"basic", basicAuth}, {"bearer", bearerAuth}} {
		t.Run(mode.name+"/podman", func(t *testing.T) {
			isolateCredentials(t)
			host, _ := seedAuthRegistry(t, mode.wrap(user, pass))
			f := filepath.Join(t.TempDir(), "auth.json")
			if err := os.WriteFile(f, authJSON(host+"/private"), 0o600); err != nil {
				t.Fatal(err)
			}
			t.Setenv("REGISTRY_AUTH_FILE", f)
			if _, err := Image(ctxBG, host+"/private/img:v1"); err != nil {
				t.Fatal(err)
			}
		})
		t.Run(mode.name+"/xdg", func(t *testing.T) {
			isolateCredentials(t)
			host, _ := seedAuthRegistry(t, mode.wrap(user, pass))
			dir := filepath.Join(os.Getenv("XDG_RUNTIME_DIR"), "containers")
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "auth.json"), authJSON(host), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := Image(ctxBG, host+"/private/img:v1"); err != nil {
				t.Fatal(err)
			}
		})
		t.Run(mode.name+"/docker", func(t *testing.T) {
			isolateCredentials(t)
			host, _ := seedAuthRegistry(t, mode.wrap(user, pass))
			dir := os.Getenv("DOCKER_CONFIG")
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "config.json"), authJSON(host), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := Image(ctxBG, host+"/private/img:v1"); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("wrong namespace", func(t *testing.T) {
		isolateCredentials(t)
		host, _ := seedAuthRegistry(t, basicAuth(user, pass))
		f := filepath.Join(t.TempDir(), "auth.json")
		if err := os.WriteFile(f, authJSON(host+"/other"), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv("REGISTRY_AUTH_FILE", f)
		if _, err := Image(ctxBG, host+"/private/img:v1"); err == nil {
			t.Fatal("credentials for another namespace were used")
		}
	})
}

func TestRegistryCA(t *testing.T) {
	isolateCredentials(t)
	var inner http.Handler
	_, openHost := newRegistry(t, func(h http.Handler) http.Handler { inner = h; return h })
	want := randomImage(t, 128, 1, nil)
	push(t, openHost+"/tls:v1", want)
	srv := httptest.NewUnstartedServer(inner)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // expected handshake failures
	srv.StartTLS()
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "https://")
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Image(ctxBG, host+"/tls:v1"); err == nil {
		t.Fatal("untrusted certificate accepted")
	}
	img, err := Image(ctxBG, host+"/tls:v1", WithRegistryCA(ca))
	if err != nil {
		t.Fatal(err)
	}
	if mustDigest(t, img) != mustDigest(t, want) {
		t.Fatal("digest differs")
	}
	if _, err := Image(ctxBG, host+"/tls:v1", WithInsecure(true)); err != nil {
		t.Fatalf("insecure: %v", err)
	}
	if _, err := Image(ctxBG, "http://"+host+"/tls:v1", WithRegistryCA(ca)); err == nil {
		t.Fatal("http:// reference reached a TLS-only registry")
	}
}

// schema1Manifest is a hand-written Docker schema 1 manifest.
const schema1Manifest = `{
   "schemaVersion": 1,
   "name": "old/img",
   "tag": "v1",
   "architecture": "amd64",
   "fsLayers": [{"blobSum": "sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4"}],
   "history": [{"v1Compatibility": "{\"id\":\"e45a5af57b00862e5ef5782a9925979a02ba2b12dff832fd0991335f4a11e5c5\"}"}]
}`

func TestSchema1(t *testing.T) {
	isolateCredentials(t)
	for _, ct := range []string{string(types.DockerManifestSchema1Signed), string(types.DockerManifestSchema1), "application/json"} {
		t.Run(ct, func(t *testing.T) {
			_, host := newRegistry(t, func(h http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if r.URL.Path == "/v2/old/img/manifests/v1" {
						w.Header().Set("Content-Type", ct)
						fmt.Fprint(w, schema1Manifest)
						return
					}
					h.ServeHTTP(w, r)
				})
			})
			_, err := Image(ctxBG, host+"/old/img:v1")
			if !errors.Is(err, ErrSchema1) {
				t.Fatalf("err = %v, want ErrSchema1", err)
			}
		})
	}
}

func TestUserAgentAndResolveEvent(t *testing.T) {
	isolateCredentials(t)
	agents := make(chan string, 100)
	_, host := newRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet {
				select {
				case agents <- r.UserAgent():
				default:
				}
			}
			h.ServeHTTP(w, r)
		})
	})
	img := randomImage(t, 64, 2, nil)
	push(t, host+"/ua:1", img)
	for len(agents) > 0 {
		<-agents
	}
	var events []progress.Event
	if _, err := Image(ctxBG, host+"/ua:1", WithUserAgent("img2ext4-test/1.0"), WithProgress(func(ev progress.Event) { events = append(events, ev) })); err != nil {
		t.Fatal(err)
	}
	close(agents)
	n := 0
	for ua := range agents {
		n++
		if !strings.HasPrefix(ua, "img2ext4-test/1.0") {
			t.Errorf("User-Agent %q", ua)
		}
	}
	if n == 0 {
		t.Error("no requests seen")
	}
	if len(events) != 1 || events[0].Phase != progress.PhaseResolve || events[0].Layers != 2 || !events[0].Complete || events[0].Digest != mustDigest(t, img).String() {
		t.Errorf("resolve events %+v", events)
	}
}
