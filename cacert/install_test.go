package cacert_test

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/img2ext4/img2ext4/cacert"
	"github.com/img2ext4/img2ext4/internal/tartest"
	"github.com/img2ext4/img2ext4/internal/trusttest"
)

// snapshot hashes everything below root: names, modes, times, link targets and contents.
func snapshot(t *testing.T, root string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		line := p + " " + info.Mode().String()
		if !d.IsDir() {
			line += " " + info.ModTime().String()
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			line += " -> " + target
		case d.Type().IsRegular():
			b, _ := os.ReadFile(p)
			sum := sha256.Sum256(b)
			line += " " + hex.EncodeToString(sum[:])
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// TestInstallLayouts installs two CAs (one whose subject collides with a distribution CA's)
// into each distribution layout through a RootFS and checks every store with the host's
// openssl and keytool, the kept metadata, a second run that changes nothing, and the
// host's own trust stores.
func TestInstallLayouts(t *testing.T) {
	trusttest.Need(t, "openssl", "keytool")
	host := trusttest.HostStores(t)
	p := trusttest.NewPKI(t)
	certs := []*x509.Certificate{p.Corp.Cert, p.Twin.Cert}
	for _, l := range trusttest.All(t, p) {
		t.Run(l.Name, func(t *testing.T) {
			fsys, root := rootFS(t, l.Entries)
			rep, err := cacert.Install(context.Background(), fsys, certs)
			if err != nil {
				t.Fatal(err)
			}
			js, _ := json.MarshalIndent(rep, "", "  ")
			t.Logf("report: %s", js)
			if len(rep.Warnings) != 0 {
				t.Errorf("warnings: %q", rep.Warnings)
			}
			if len(rep.Changes) == 0 {
				t.Fatal("no change reported")
			}
			if rep.Bundle != l.Bundles[0] || rep.CADir != l.CADirs[0] {
				t.Errorf("report names bundle %q and CA directory %q, want %q and %q", rep.Bundle, rep.CADir, l.Bundles[0], l.CADirs[0])
			}
			trusttest.CheckLayout(t, root, l, p)
			// Edited files keep their mode and time.
			for _, e := range l.Entries {
				if e.Hdr.Typeflag != '0' {
					continue
				}
				info, err := os.Lstat(filepath.Join(root, e.Hdr.Name))
				if err != nil {
					t.Fatal(err)
				}
				if !info.ModTime().Equal(e.Hdr.ModTime) || info.Mode().Perm() != fs.FileMode(e.Hdr.Mode).Perm() {
					t.Errorf("%s: mode %v time %v, want %v %v", e.Hdr.Name, info.Mode().Perm(), info.ModTime(), fs.FileMode(e.Hdr.Mode).Perm(), e.Hdr.ModTime)
				}
			}
			before := snapshot(t, root)
			rep2, err := cacert.Install(context.Background(), fsys, append(certs, p.Corp.Cert))
			if err != nil {
				t.Fatal(err)
			}
			if len(rep2.Changes) != 0 {
				t.Errorf("second run changed %+v", rep2.Changes)
			}
			if rep2.Stores != rep.Stores {
				t.Errorf("second run found %d stores, first %d", rep2.Stores, rep.Stores)
			}
			if after := snapshot(t, root); after != before {
				t.Errorf("second run changed the tree")
			}
		})
	}
	if trusttest.HostStores(t) != host {
		t.Error("the host's trust stores changed")
	}
}

// TestReportText: the summary names every change, and Env points at the bundle
// and directory the report names.
func TestReportText(t *testing.T) {
	r := &cacert.Report{
		Certificates: 1, Stores: 3, Bundle: "/etc/ssl/certs/ca-certificates.crt", CADir: "/etc/ssl/certs",
		Changes: []cacert.Change{
			{Path: "/etc/ssl/certs", Kind: cacert.KindCADir, Added: 1, Links: 1},
			{Path: "/etc/ssl/certs/ca-certificates.crt", Kind: cacert.KindBundle, Added: 1, Created: true},
		},
		Warnings: []string{"CA certificate \"CN=x\" expired on 2002-01-01"},
	}
	want := []string{
		"1 CA certificate: 2 of 3 trust stores changed",
		"  /etc/ssl/certs (ca-dir): 1 certificate added, 1 hash link made",
		"  /etc/ssl/certs/ca-certificates.crt (bundle): 1 certificate added, file created",
	}
	if got := r.Summary(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Summary:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	wantEnv := "NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt SSL_CERT_DIR=/etc/ssl/certs"
	if got := strings.Join(r.Env(), " "); got != wantEnv {
		t.Errorf("Env = %s, want %s", got, wantEnv)
	}
	if (*cacert.Report)(nil).Env() != nil || (&cacert.Report{}).Env() != nil {
		t.Error("Env without a bundle is not empty")
	}
}

// TestInstallStoresOnce: a store reached by several known names (a bundle, a CA directory
// and an anchor directory, each also reached through a link) is edited and counted once,
// and holds each certificate once.
func TestInstallStoresOnce(t *testing.T) {
	distro := trusttest.NewCA(t, pkix.Name{CommonName: "Distro Root"})
	corp := trusttest.NewCA(t, pkix.Name{CommonName: "Corp Root"})
	fsys, root := rootFS(t, []tartest.Entry{
		tartest.Dir("etc"), tartest.Dir("etc/ssl"), tartest.Dir("etc/ssl/certs"),
		tartest.File("etc/ssl/certs/ca-certificates.crt", string(distro.PEM)),
		tartest.Symlink("etc/ssl/cert.pem", "certs/ca-certificates.crt"),
		tartest.Dir("etc/pki"), tartest.Dir("etc/pki/tls"),
		tartest.Symlink("etc/pki/tls/certs", "/etc/ssl/certs"),
		tartest.Dir("usr"), tartest.Dir("usr/local"), tartest.Dir("usr/local/share"),
		tartest.Dir("usr/local/share/ca-certificates"),
		tartest.Dir("etc/pki/ca-trust"), tartest.Dir("etc/pki/ca-trust/source"),
		tartest.Symlink("etc/pki/ca-trust/source/anchors", "/usr/local/share/ca-certificates"),
	})
	rep, err := cacert.Install(context.Background(), fsys, []*x509.Certificate{corp.Cert})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Stores != 3 {
		t.Errorf("found %d stores, want 3 (the bundle, the CA directory, the anchor directory)", rep.Stores)
	}
	seen := map[string]bool{}
	for _, c := range rep.Changes {
		if seen[c.Path] {
			t.Errorf("%s changed twice: %+v", c.Path, rep.Changes)
		}
		seen[c.Path] = true
	}
	if len(rep.Changes) != 3 {
		t.Errorf("changes %+v, want one per store", rep.Changes)
	}
	b, err := os.ReadFile(filepath.Join(root, "etc/ssl/certs/ca-certificates.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), strings.TrimSpace(string(corp.PEM))); n != 1 {
		t.Errorf("the bundle holds the new CA %d times, want once", n)
	}
}
