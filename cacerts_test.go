package img2ext4_test

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/img2ext4/img2ext4"
	"github.com/img2ext4/img2ext4/cacert"
	"github.com/img2ext4/img2ext4/internal/tartest"
	"github.com/img2ext4/img2ext4/internal/trusttest"
)

// TestCACertsExt4 converts test images with the trust-store layouts of Debian, Alpine,
// Fedora, openSUSE, a certifi image, a Java image and an image with no store into ext4
// with two CAs (one whose subject hash collides with a distribution CA's), twice, and
// checks: the two images are byte-identical and e2fsck-clean; read back with debugfs
// rdump, every bundle and CA directory verifies a leaf of each CA with openssl, the hash
// links are what openssl rehash makes, keytool lists the CAs in every Java store; the
// host's own trust stores are untouched.
func TestCACertsExt4(t *testing.T) {
	trusttest.Need(t, "openssl", "keytool")
	needTool(t, "debugfs")
	needTool(t, "e2fsck")
	host := trusttest.HostStores(t)
	p := trusttest.NewPKI(t)
	for _, l := range trusttest.All(t, p) {
		t.Run(l.Name, func(t *testing.T) {
			ref := pushed(t, tartest.Image(tartest.Tar(l.Entries...)))
			tmp := t.TempDir()
			var sums []string
			var res *img2ext4.Result
			for i := range 2 {
				out := filepath.Join(tmp, "img"+strconv.Itoa(i))
				var err error
				res, err = img2ext4.Convert(context.Background(), ref, out, img2ext4.WithCACerts(p.Corp.Cert, p.Twin.Cert))
				if err != nil {
					t.Fatal(err)
				}
				sums = append(sums, sha(t, out))
			}
			if sums[0] != sums[1] {
				t.Error("two conversions differ")
			}
			img := filepath.Join(tmp, "img0")
			fsck(t, img)
			if res.CACerts == nil || len(res.CACerts.Changes) == 0 || len(res.CACerts.Warnings) != 0 {
				t.Fatalf("CACerts report: %+v", res.CACerts)
			}
			root := filepath.Join(tmp, "rdump")
			os.Mkdir(root, 0o755)
			if b, err := exec.Command("debugfs", "-R", "rdump / "+root, img).CombinedOutput(); err != nil {
				t.Fatalf("debugfs rdump: %v\n%s", err, b)
			}
			trusttest.CheckLayout(t, root, l, p)
			// Edited files keep their mode and time (rdump restores both, times to the
			// second, and the layouts' times have no fraction).
			for _, e := range l.Entries {
				if e.Hdr.Typeflag != '0' {
					continue
				}
				info, err := os.Lstat(filepath.Join(root, e.Hdr.Name))
				if err != nil {
					t.Fatal(err)
				}
				if !info.ModTime().Equal(e.Hdr.ModTime) || info.Mode().Perm() != os.FileMode(e.Hdr.Mode).Perm() {
					t.Errorf("%s: mode %v time %v, want %v %v", e.Hdr.Name, info.Mode().Perm(), info.ModTime(), os.FileMode(e.Hdr.Mode).Perm(), e.Hdr.ModTime)
				}
			}
		})
	}
	if trusttest.HostStores(t) != host {
		t.Error("the host's trust stores changed")
	}
}

// TestCACertsDirAndTar: the same mutation reaches the directory and tar outputs, and an
// image that holds the CAs already is left as it is.
func TestCACertsDirAndTar(t *testing.T) {
	trusttest.Need(t, "openssl", "keytool", "tar")
	p := trusttest.NewPKI(t)
	l := trusttest.Fedora(t, p)
	ref := pushed(t, tartest.Image(tartest.Tar(l.Entries...)))
	tmp := t.TempDir()
	ca := img2ext4.WithCACerts(p.Corp.Cert, p.Twin.Cert)
	dir := filepath.Join(tmp, "dir")
	if _, err := img2ext4.Convert(context.Background(), ref, dir, img2ext4.WithFormat(img2ext4.FormatDir), ca); err != nil {
		t.Fatal(err)
	}
	trusttest.CheckLayout(t, dir, l, p)
	tarFile := filepath.Join(tmp, "root.tar")
	if _, err := img2ext4.Convert(context.Background(), ref, tarFile, img2ext4.WithFormat(img2ext4.FormatTar), ca); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(tmp, "untar")
	os.Mkdir(root, 0o755)
	if b, err := exec.Command("tar", "-xf", tarFile, "-C", root).CombinedOutput(); err != nil {
		t.Fatalf("tar -x: %v\n%s", err, b)
	}
	trusttest.CheckLayout(t, root, l, p)

	// An image that holds the CAs already (the tar output as its one layer) gets nothing.
	b, err := os.ReadFile(tarFile)
	if err != nil {
		t.Fatal(err)
	}
	res, err := img2ext4.Convert(context.Background(), pushed(t, tartest.Image(b)), filepath.Join(tmp, "again.img"), ca)
	if err != nil {
		t.Fatal(err)
	}
	if res.CACerts == nil || len(res.CACerts.Changes) != 0 || res.CACerts.Stores < len(l.Bundles) {
		t.Errorf("converting an image that holds the CAs: %+v", res.CACerts)
	}
}

// TestCACertsRefused: a non-CA certificate is refused before anything is fetched, and an
// expired CA under WithCACertStrict fails the conversion and leaves no output.
func TestCACertsRefused(t *testing.T) {
	p := trusttest.NewPKI(t)
	leaf, err := cacert.ParsePEM(p.Leaf)
	if err == nil {
		t.Fatalf("ParsePEM accepted a leaf: %v", leaf)
	}
	leafCert := trusttest.NewCAFromTemplate(t, &x509.Certificate{Subject: pkix.Name{CommonName: "leaf"}, NotBefore: time.Unix(0, 0), NotAfter: time.Unix(4e9, 0)})
	out := filepath.Join(t.TempDir(), "img")
	_, err = img2ext4.Convert(context.Background(), "127.0.0.1:1/none:1", out, img2ext4.WithCACerts(leafCert.Cert))
	if !errors.Is(err, cacert.ErrNotCA) {
		t.Errorf("leaf: err = %v, want ErrNotCA", err)
	}
	expired := trusttest.NewCAFromTemplate(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "Old CA"}, NotBefore: time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter: time.Date(2002, 1, 1, 0, 0, 0, 0, time.UTC), BasicConstraintsValid: true, IsCA: true,
	})
	ref := pushed(t, tartest.Image(tartest.Tar(trusttest.Alpine(t, p).Entries...)))
	_, err = img2ext4.Convert(context.Background(), ref, out, img2ext4.WithCACerts(expired.Cert), img2ext4.WithCACertStrict(true))
	if !errors.Is(err, cacert.ErrValidity) {
		t.Errorf("expired, strict: err = %v, want ErrValidity", err)
	}
	if ents, _ := os.ReadDir(filepath.Dir(out)); len(ents) != 0 {
		t.Errorf("a failed conversion left %v", ents)
	}
	res, err := img2ext4.Convert(context.Background(), ref, out, img2ext4.WithCACerts(expired.Cert))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.CACerts.Warnings) != 1 {
		t.Errorf("expired: warnings %q", res.CACerts.Warnings)
	}
}
