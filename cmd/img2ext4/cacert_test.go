package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/img2ext4/img2ext4"
	"github.com/img2ext4/img2ext4/cacert"
	"github.com/img2ext4/img2ext4/internal/tartest"
	"github.com/img2ext4/img2ext4/internal/trusttest"
)

// TestCACert: --ca-cert (repeated, a file with two certificates) reaches the image's trust
// stores, the summary names the changes, --config-out carries the environment hints, and
// bad --ca-cert input is a usage error before any work.
func TestCACert(t *testing.T) {
	trusttest.Need(t, "openssl")
	tmp := t.TempDir()
	p := trusttest.NewPKI(t)
	both := filepath.Join(tmp, "both.pem")
	os.WriteFile(both, append(append([]byte("# corp\n"), p.Corp.PEM...), p.Twin.PEM...), 0o644)
	again := filepath.Join(tmp, "again.pem")
	os.WriteFile(again, p.Corp.PEM, 0o644)
	leaf := filepath.Join(tmp, "leaf.pem")
	os.WriteFile(leaf, p.Leaf, 0o644)

	l := trusttest.Alpine(t, p)
	lay := filepath.Join(tmp, "layout")
	ly, _ := layout.Write(lay, empty.Index)
	if err := ly.AppendImage(tartest.Image(tartest.Tar(l.Entries...))); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(tmp, "rootfs")
	cfg := filepath.Join(tmp, "launch.json")
	code, _, errOut := runCLI(t, "", "--progress", "none", "--format", "dir", "--config-out", cfg,
		"--ca-cert", both, "--ca-cert", again, "oci:"+lay, out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"\n2 CA certificates: 2 of 2 trust stores changed\n",
		"\n  /etc/ssl/certs/ca-certificates.crt (bundle): 2 certificates added\n",
		"\n  /etc/ssl/certs (ca-dir): 2 certificates added, 2 hash links made\n",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("summary lacks %q:\n%s", want, errOut)
		}
	}
	for _, b := range l.Bundles {
		trusttest.CheckBundle(t, out, b, p.LeafFile)
	}
	// --progress json: the result object carries the report.
	code, _, errOut = runCLI(t, "", "--progress", "json", "--format", "dir", "--ca-cert", both, "oci:"+lay, filepath.Join(tmp, "rootfs2"))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(errOut), "\n")
	var result struct {
		Type    string
		CACerts *cacert.Report `json:"ca_certs"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &result); err != nil || result.Type != "result" || result.CACerts == nil || len(result.CACerts.Changes) != 2 {
		t.Errorf("last JSON line %q: %+v, %v", lines[len(lines)-1], result, err)
	}

	var lc img2ext4.LaunchConfig
	b, _ := os.ReadFile(cfg)
	if err := json.Unmarshal(b, &lc); err != nil {
		t.Fatal(err)
	}
	wantEnv := "NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt SSL_CERT_DIR=/etc/ssl/certs"
	if got := strings.Join(lc.CAEnv, " "); got != wantEnv {
		t.Errorf("ca_env = %s, want %s", got, wantEnv)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--ca-cert", filepath.Join(tmp, "missing.pem")}, "missing.pem"},
		{[]string{"--ca-cert", leaf}, "not a CA certificate"},
		{[]string{"--ca-cert", cfg}, "invalid PEM"},
		{[]string{"--ca-cert-strict"}, "--ca-cert-strict needs --ca-cert"},
	} {
		dst := filepath.Join(tmp, "never")
		code, _, errOut := runCLI(t, "", append(tc.args, "oci:"+lay, dst)...)
		if code != exitUsage || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 naming %q", tc.args, code, errOut, tc.want)
		}
		if _, err := os.Stat(dst); err == nil {
			t.Errorf("%v: output written", tc.args)
		}
	}
}
