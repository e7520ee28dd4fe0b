package ocifetch

import (
	"encoding/base64"
	"encoding/json"
	"go/parser"
	"go/token"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/img2ext4/img2ext4/progress"
)

func TestProgressRateLimit(t *testing.T) {
	var events []progress.Event
	rep := &reporter{fn: func(ev progress.Event) { events = append(events, ev) }}
	pw := &progressWriter{w: io.Discard, m: progress.NewMeter(rep.meterFunc(), progress.Event{Phase: progress.PhaseDownload, Total: 1000}, time.Now())}
	for range 1000 {
		pw.Write([]byte{0})
	}
	pw.m.Complete()
	// A thousand writes well inside 100 ms: the first one reports, then only the final.
	if len(events) > 3 {
		t.Errorf("%d events for a burst of writes, want at most 3", len(events))
	}
	last := events[len(events)-1]
	if !last.Complete || last.Done != 1000 {
		t.Errorf("final event %+v", last)
	}

	// An intermediate event never waits for a callback still running.
	block := make(chan struct{})
	entered := make(chan struct{})
	rep = &reporter{fn: func(progress.Event) { entered <- struct{}{}; <-block }}
	go rep.report(progress.Event{}, true)
	<-entered
	done := make(chan struct{})
	go func() { rep.report(progress.Event{}, false); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("intermediate event blocked behind a running callback")
	}
	close(block)
}

func TestAuthFileKeychain(t *testing.T) {
	enc := func(u string) string { return base64.StdEncoding.EncodeToString([]byte(u + ":pw")) }
	b, _ := json.Marshal(map[string]any{"auths": map[string]any{
		"reg.example":                 map[string]string{"auth": enc("host")},
		"reg.example/team":            map[string]string{"auth": enc("team")},
		"reg.example/team/app":        map[string]string{"auth": enc("app")},
		"https://index.docker.io/v1/": map[string]string{"auth": enc("hub")},
		"other.example:5000":          map[string]string{"username": "port", "password": "pw"},
		"empty.example":               map[string]string{},
	}})
	f := filepath.Join(t.TempDir(), "auth.json")
	if err := os.WriteFile(f, b, 0o600); err != nil {
		t.Fatal(err)
	}
	kc := AuthFileKeychain(f)
	for ref, want := range map[string]string{
		"reg.example/team/app":     "app",
		"reg.example/team/other":   "team",
		"reg.example/teamx/app":    "host",
		"reg.example/x":            "host",
		"alpine":                   "hub",
		"docker.io/library/ubuntu": "hub",
		"other.example:5000/a/b":   "port",
		"other.example/a":          "",
		"empty.example/a":          "",
	} {
		r, err := name.NewRepository(ref)
		if err != nil {
			t.Fatal(err)
		}
		a, err := kc.Resolve(r)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := a.Authorization()
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Username != want {
			t.Errorf("%s: user %q, want %q", ref, cfg.Username, want)
		}
	}
	if a, err := AuthFileKeychain(filepath.Join(t.TempDir(), "missing.json")).Resolve(name.MustParseReference("x").Context()); err != nil || a != authn.Anonymous {
		t.Errorf("missing file: %v, %v; want anonymous", a, err)
	}
	bad := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(bad, []byte(`{"auths":{"r":{"auth":"s3cr3t!!"}}}`), 0o600)
	if _, err := AuthFileKeychain(bad).Resolve(name.MustParseReference("r/x").Context()); err == nil || strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("bad auth field: err = %v", err)
	}
}

func TestPlatformScore(t *testing.T) {
	p := func(s string) v1.Platform {
		parts := strings.Split(s, "/")
		pl := v1.Platform{OS: parts[0], Architecture: parts[1]}
		if len(parts) > 2 {
			pl.Variant = parts[2]
		}
		return pl
	}
	for _, tc := range []struct {
		want, have string
		ok         bool
	}{
		{"linux/amd64", "linux/amd64", true},
		{"linux/amd64", "linux/amd64/v2", true},
		{"linux/amd64/v3", "linux/amd64/v2", true},
		{"linux/amd64/v2", "linux/amd64/v3", false},
		{"linux/arm64", "linux/arm64/v8", true},
		{"linux/arm64/v8", "linux/arm64", true},
		{"linux/arm64/v8", "linux/aarch64", true},
		{"linux/arm/v7", "linux/arm", true},
		{"linux/arm/v7", "linux/arm/v6", true},
		{"linux/arm/v6", "linux/arm/v7", false},
		{"linux/amd64", "linux/arm64", false},
		{"linux/amd64", "windows/amd64", false},
	} {
		if got := platformScore(p(tc.want), p(tc.have)) >= 0; got != tc.ok {
			t.Errorf("platformScore(%s, %s) ok = %v, want %v", tc.want, tc.have, got, tc.ok)
		}
	}
	if platformScore(p("linux/arm/v7"), p("linux/arm/v7")) <= platformScore(p("linux/arm/v7"), p("linux/arm/v6")) {
		t.Error("exact variant does not beat an older one")
	}
}

// TestDeps keeps the library free of CLI and process dependencies.
func TestDeps(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range af.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if p == "os/exec" || strings.Contains(p, "spf13/pflag") || strings.Contains(p, "/img2ext4/cmd") {
				t.Errorf("%s imports %s", f, p)
			}
		}
	}
}
