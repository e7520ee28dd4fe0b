package cacert

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/img2ext4/img2ext4/layerapply"
)

// Kind names the kind of trust store a [Change] edited.
type Kind string

// The kinds of trust store Install edits.
const (
	// KindBundle is a PEM bundle of "CERTIFICATE" blocks that TLS libraries read.
	KindBundle Kind = "bundle"
	// KindTrustBundle is an OpenSSL bundle of "TRUSTED CERTIFICATE" blocks (Fedora's
	// ca-bundle.trust.crt); added certificates are trusted for every purpose.
	KindTrustBundle Kind = "trust-bundle"
	// KindAnchor is a distribution's source directory of local CAs, read by its
	// update-ca-certificates or update-ca-trust, so a later regeneration keeps the CA.
	KindAnchor Kind = "anchor"
	// KindCADir is an OpenSSL CA directory (-CApath) holding one file per CA and
	// "<subject-hash>.N" links.
	KindCADir Kind = "ca-dir"
	// KindCertifi is a Python certifi cacert.pem.
	KindCertifi Kind = "certifi"
	// KindJKS is a Java KeyStore (JKS) trust store.
	KindJKS Kind = "java-jks"
	// KindPKCS12 is a PKCS#12 Java trust store.
	KindPKCS12 Kind = "java-pkcs12"
)

// Change is one trust store Install changed.
type Change struct {
	// Path is where the store really is in the image (symbolic links resolved), absolute.
	Path string `json:"path"`
	// Kind is the kind of store.
	Kind Kind `json:"kind"`
	// Added counts the certificates added to it.
	Added int `json:"added"`
	// Links counts the hash links created in a CA directory.
	Links int `json:"links,omitempty"`
	// RemovedLinks counts stale hash links removed from a CA directory, as openssl rehash
	// removes them.
	RemovedLinks int `json:"removed_links,omitempty"`
	// Created is true when Install created the file.
	Created bool `json:"created,omitempty"`
}

// Report tells what [Install] did.
type Report struct {
	// Certificates counts the distinct CA certificates asked for.
	Certificates int `json:"certificates"`
	// Stores counts the trust stores found (or created), changed or not.
	Stores int `json:"stores"`
	// Changes lists the stores changed, sorted by path.
	Changes []Change `json:"changes"`
	// Warnings lists what was skipped or suspicious (an expired certificate, a keystore
	// whose password is not the one given), one sentence each.
	Warnings []string `json:"warnings,omitempty"`
	// Bundle is the image's system PEM bundle, named as programs name it (the first of
	// the known bundle paths that exists, "TRUSTED CERTIFICATE" bundles left out).
	Bundle string `json:"bundle,omitempty"`
	// CADir is the image's OpenSSL CA directory, named as programs name it, or "".
	CADir string `json:"ca_dir,omitempty"`
}

// Env returns environment settings, "NAME=value", that point runtimes which ignore the
// system trust store at the updated one: NODE_EXTRA_CA_CERTS for Node.js (it trusts only
// its own compiled-in CAs otherwise), and SSL_CERT_FILE and SSL_CERT_DIR for programs
// built against an OpenSSL or a Go runtime that looks in another place than the image's
// (a statically linked tool, a Python or Ruby with its own OpenSSL under /usr/local or
// /opt). Programs using the distribution's OpenSSL, GnuTLS or NSS builds, Go programs
// (which search the paths above), Python certifi and Java need none: Install edited their
// stores. It returns nothing when there is no bundle.
func (r *Report) Env() []string {
	if r == nil || r.Bundle == "" {
		return nil
	}
	env := []string{"NODE_EXTRA_CA_CERTS=" + r.Bundle, "SSL_CERT_FILE=" + r.Bundle}
	if r.CADir != "" {
		env = append(env, "SSL_CERT_DIR="+r.CADir)
	}
	return env
}

// Option configures [Install].
type Option func(*options) error

type options struct {
	strict       bool
	now          time.Time
	javaPassword string
	entryTime    time.Time
}

// WithStrict makes an expired or not-yet-valid certificate, and a Java keystore that
// cannot be read with the password, an error instead of a warning. The default is false.
func WithStrict(strict bool) Option {
	return func(o *options) error { o.strict = strict; return nil }
}

// WithTime sets the time the certificates' validity is checked against. It does not
// change what is written. The default is the time Install runs.
func WithTime(t time.Time) Option {
	return func(o *options) error {
		if t.IsZero() {
			return errors.New("cacert: WithTime: zero time")
		}
		o.now = t
		return nil
	}
}

// WithJavaPassword sets the password of the image's Java keystores. The default is
// "changeit", the password every distribution uses for its cacerts; a password-less
// PKCS#12 store (the JDK's own since JDK 18) is read either way.
func WithJavaPassword(password string) Option {
	return func(o *options) error { o.javaPassword = password; return nil }
}

// WithEntryTime sets the creation time recorded for entries added to JKS keystores. The
// default is each certificate's NotBefore, so the output depends only on the input.
func WithEntryTime(t time.Time) Option {
	return func(o *options) error { o.entryTime = t; return nil }
}

func makeOptions(opts []Option) (*options, error) {
	o := &options{javaPassword: "changeit"}
	for _, opt := range opts {
		if err := opt(o); err != nil {
			return nil, err
		}
	}
	if o.now.IsZero() {
		o.now = time.Now()
	}
	return o, nil
}

// bundlePaths are the PEM bundles applications read, per distribution.
var bundlePaths = []string{
	"/etc/ssl/certs/ca-certificates.crt",                      // Debian, Ubuntu, distroless, Alpine
	"/etc/ssl/cert.pem",                                       // Alpine (a link to the above), OpenSSL's default file
	"/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",       // Fedora, RHEL, CentOS, Amazon Linux
	"/etc/pki/tls/certs/ca-bundle.crt",                        // the same, through a link (older releases: a file)
	"/etc/pki/tls/cert.pem",                                   // the same, through a link
	"/etc/pki/ca-trust/extracted/openssl/ca-bundle.trust.crt", // TRUSTED CERTIFICATE blocks
	"/etc/pki/tls/certs/ca-bundle.trust.crt",                  // older RHEL
	"/var/lib/ca-certificates/ca-bundle.pem",                  // openSUSE, SLES
	"/etc/ssl/ca-bundle.pem",                                  // the same, through a link
}

// anchorDirs are the source directories the distributions' update tools read.
var anchorDirs = []string{
	"/usr/local/share/ca-certificates", // Debian, Ubuntu, Alpine: update-ca-certificates
	"/etc/pki/ca-trust/source/anchors", // Fedora, RHEL: update-ca-trust
	"/etc/pki/trust/anchors",           // openSUSE, SLES: update-ca-certificates
}

// caDirs are OpenSSL CA directories (-CApath, SSL_CERT_DIR).
var caDirs = []string{
	"/etc/ssl/certs", // Debian, Alpine; a link on Fedora (/etc/pki/tls/certs) and SUSE (/var/lib/ca-certificates/pem)
	"/etc/pki/tls/certs",
	"/etc/pki/ca-trust/extracted/pem/directory-hash", // Fedora 37+
	"/var/lib/ca-certificates/pem",
}

// javaStores are the system Java trust stores; JDK-local ones (lib/security/cacerts) are
// found by walking the image.
var javaStores = []string{
	"/etc/ssl/certs/java/cacerts",              // Debian, Ubuntu
	"/etc/pki/ca-trust/extracted/java/cacerts", // Fedora, RHEL
	"/etc/pki/java/cacerts",                    // the same, through a link
	"/var/lib/ca-certificates/java-cacerts",    // openSUSE, SLES
}

const (
	maxStoreSize  = 64 << 20 // a trust store larger than this is refused
	maxWalkDepth  = 64
	defaultBundle = "/etc/ssl/certs/ca-certificates.crt"
)

type installer struct {
	ctx   context.Context
	fsys  layerapply.RootFS
	o     *options
	certs []*x509.Certificate
	rep   *Report
	done  map[string]bool // real paths already handled
	// trusted holds the names given to bundle that lead to a TRUSTED CERTIFICATE bundle.
	trusted map[string]bool
}

// Install adds certs to every trust store of the image in fsys and returns what it
// changed. See the package documentation for the stores it knows. It is idempotent: a
// certificate a store already holds (compared by DER) is not added again. Edited files keep
// their mode, owner and times; new files are 0644 (directories 0755), owned by root.
//
// Every certificate must be a CA ([ErrNotCA] otherwise); one outside its validity period
// is a warning in the report, or an error wrapping [ErrValidity] under [WithStrict].
// Install reads and writes only through fsys and does not close anything it did not open.
func Install(ctx context.Context, fsys layerapply.RootFS, certs []*x509.Certificate, opts ...Option) (*Report, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
	in := &installer{ctx: ctx, fsys: fsys, o: o, rep: &Report{}, done: map[string]bool{}, trusted: map[string]bool{}}
	seen := map[string]bool{}
	for _, c := range certs {
		if c == nil {
			return nil, errors.New("cacert: nil certificate")
		}
		if err := checkCA(c); err != nil {
			return nil, fmt.Errorf("cacert: %s: %w", c.Subject, err)
		}
		if msg := checkValidity(c, o.now); msg != "" {
			if o.strict {
				return nil, fmt.Errorf("%w: %s", ErrValidity, msg)
			}
			in.warn("%s", msg)
		}
		if !seen[string(c.Raw)] {
			seen[string(c.Raw)] = true
			in.certs = append(in.certs, c)
		}
	}
	if len(in.certs) == 0 {
		return nil, errors.New("cacert: no certificate to install")
	}
	in.rep.Certificates = len(in.certs)

	found, err := in.walk()
	if err != nil {
		return nil, err
	}
	bundles := 0
	for _, p := range bundlePaths {
		n, err := in.bundle(p, KindBundle)
		if err != nil {
			return nil, err
		}
		bundles += n
		if n > 0 && in.rep.Bundle == "" && !in.trusted[p] {
			in.rep.Bundle = p
		}
	}
	if bundles == 0 {
		if err := in.createBundle(); err != nil {
			return nil, err
		}
		in.rep.Bundle = defaultBundle
	}
	for _, p := range found.certifi {
		if _, err := in.bundle(p, KindCertifi); err != nil {
			return nil, err
		}
	}
	for _, d := range anchorDirs {
		if err := in.anchors(d); err != nil {
			return nil, err
		}
	}
	for _, d := range caDirs {
		if err := in.caDir(d); err != nil {
			return nil, err
		}
	}
	for _, p := range append(append([]string(nil), javaStores...), found.java...) {
		if err := in.java(p); err != nil {
			return nil, err
		}
	}
	sort.Slice(in.rep.Changes, func(i, j int) bool { return in.rep.Changes[i].Path < in.rep.Changes[j].Path })
	return in.rep, nil
}

func (in *installer) warn(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	for _, w := range in.rep.Warnings {
		if w == msg {
			return
		}
	}
	in.rep.Warnings = append(in.rep.Warnings, msg)
}

// resolve returns the real absolute path of name inside the image and its FileInfo, or ok
// false when it does not exist (other failures become warnings).
func (in *installer) resolve(name string) (real string, info fs.FileInfo, ok bool) {
	r, err := in.fsys.EvalSymlinks(name)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			in.warn("skipping %s: %v", name, err)
		}
		return "", nil, false
	}
	real = path.Join("/", r)
	info, err = in.fsys.Stat(real)
	if err != nil {
		in.warn("skipping %s: %v", name, err)
		return "", nil, false
	}
	return real, info, true
}

// claim finds the store at name (a directory when dir, else a regular file) and claims it
// for this run, so that a store reached by several names is edited once: exists tells
// whether name resolves to such a store, and claimed whether this call is the first to
// reach it, which counts it in Report.Stores. It returns the context's error once the
// context is done.
func (in *installer) claim(name string, dir bool) (real string, exists, claimed bool, err error) {
	if err := in.ctx.Err(); err != nil {
		return "", false, false, err
	}
	real, info, ok := in.resolve(name)
	if !ok || info.IsDir() != dir || !dir && !info.Mode().IsRegular() {
		return "", false, false, nil
	}
	if in.done[real] {
		return real, true, false, nil
	}
	in.done[real] = true
	in.rep.Stores++
	return real, true, true, nil
}

func (in *installer) readFile(name string) ([]byte, error) {
	f, err := in.fsys.Open(name)
	if err != nil {
		return nil, fmt.Errorf("cacert: read %s: %w", name, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxStoreSize+1))
	if err != nil {
		return nil, fmt.Errorf("cacert: read %s: %w", name, err)
	}
	if len(data) > maxStoreSize {
		return nil, fmt.Errorf("cacert: read %s: larger than %d MiB; not a trust store this tool edits", name, maxStoreSize>>20)
	}
	return data, nil
}

func (in *installer) writeFile(name string, data []byte) error {
	if err := in.fsys.WriteFile(name, bytes.NewReader(data), 0o644); err != nil {
		return fmt.Errorf("cacert: write %s: %w", name, err)
	}
	return nil
}

// bundle adds the missing certificates to the PEM bundle at name, if it exists as a
// regular file; it returns 1 when the bundle exists (edited now or earlier).
func (in *installer) bundle(name string, kind Kind) (int, error) {
	real, exists, claimed, err := in.claim(name, false)
	if err != nil || !exists {
		return 0, err
	}
	if in.trusted[real] {
		in.trusted[name] = true
	}
	if !claimed {
		return 1, nil
	}
	data, err := in.readFile(real)
	if err != nil {
		return 0, err
	}
	trusted := isTrustBundle(data, real)
	if trusted {
		in.trusted[real], in.trusted[name] = true, true
		if kind == KindBundle {
			kind = KindTrustBundle
		}
	}
	out, added := appendCerts(data, in.certs, trusted)
	if added == 0 {
		return 1, nil
	}
	if err := in.writeFile(real, out); err != nil {
		return 0, err
	}
	in.rep.Changes = append(in.rep.Changes, Change{Path: real, Kind: kind, Added: added})
	return 1, nil
}

// createBundle gives an image without any trust store /etc/ssl/certs/ca-certificates.crt.
func (in *installer) createBundle() error {
	dir := path.Dir(defaultBundle)
	if real, info, ok := in.resolve(dir); ok && info.IsDir() {
		dir = real
	} else if err := in.fsys.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("cacert: create %s: %w", dir, err)
	}
	name := path.Join(dir, path.Base(defaultBundle))
	out, added := appendCerts(nil, in.certs, false)
	if err := in.writeFile(name, out); err != nil {
		return err
	}
	in.done[name] = true
	in.rep.Stores++
	in.rep.Changes = append(in.rep.Changes, Change{Path: name, Kind: KindBundle, Added: added, Created: true})
	return nil
}

// isTrustBundle tells whether new entries of the bundle data at name are "TRUSTED
// CERTIFICATE" blocks: when it holds such blocks and no plain ones, or is empty and
// named like one.
func isTrustBundle(data []byte, name string) bool {
	plain := bytes.Contains(data, []byte("-----BEGIN CERTIFICATE-----"))
	trusted := bytes.Contains(data, []byte("-----BEGIN TRUSTED CERTIFICATE-----"))
	if plain || trusted {
		return trusted && !plain
	}
	return strings.HasSuffix(name, ".trust.crt")
}

// pemDERs returns the DER of every certificate in the PEM data.
func pemDERs(data []byte) map[string]bool {
	have := map[string]bool{}
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return have
		}
		switch b.Type {
		case "CERTIFICATE", "X509 CERTIFICATE":
			have[string(b.Bytes)] = true
		case "TRUSTED CERTIFICATE":
			if der, err := splitTrusted(b.Bytes); err == nil {
				have[string(der)] = true
			}
		}
	}
}

// appendCerts appends to the PEM bundle data each certificate it lacks.
func appendCerts(data []byte, certs []*x509.Certificate, trusted bool) ([]byte, int) {
	have := pemDERs(data)
	out := data
	added := 0
	for _, c := range certs {
		if have[string(c.Raw)] {
			continue
		}
		if added == 0 {
			out = append([]byte(nil), data...)
			if len(out) > 0 && out[len(out)-1] != '\n' {
				out = append(out, '\n')
			}
		}
		if trusted {
			out = append(out, pem.EncodeToMemory(&pem.Block{Type: "TRUSTED CERTIFICATE", Bytes: trustedDER(c)})...)
		} else {
			out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
		}
		have[string(c.Raw)] = true
		added++
	}
	return out, added
}

// trustedDER returns c with OpenSSL trust settings (X509_CERT_AUX) trusting it for every
// purpose (anyExtendedKeyUsage) and an alias: what `openssl x509 -addtrust
// anyExtendedKeyUsage -setalias` writes. With serverAuth alone OpenSSL would reject the CA
// for a verification without a purpose.
func trustedDER(c *x509.Certificate) []byte {
	anyEKU := []byte{0x06, 0x04, 0x55, 0x1d, 0x25, 0x00} // 2.5.29.37.0
	aux := appendTLV(nil, 0x30, anyEKU)
	aux = appendTLV(aux, 0x0c, []byte(alias(c)))
	out := append([]byte(nil), c.Raw...)
	return appendTLV(out, 0x30, aux)
}

// alias names a certificate in stores that want a label: its common name, else its subject.
func alias(c *x509.Certificate) string {
	if c.Subject.CommonName != "" {
		return c.Subject.CommonName
	}
	return c.Subject.String()
}

// fileStem is the name Install gives its files: img2ext4-<first 16 hex digits of the
// SHA-256 of the DER>.
func fileStem(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return "img2ext4-" + hex.EncodeToString(sum[:8])
}

// anchors writes each missing certificate into the anchor directory dir, if it exists.
func (in *installer) anchors(dir string) error {
	real, _, claimed, err := in.claim(dir, true)
	if err != nil || !claimed {
		return err
	}
	ents, err := in.fsys.ReadDir(real)
	if err != nil {
		return fmt.Errorf("cacert: read %s: %w", real, err)
	}
	have := map[string]bool{}
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		data, err := in.readFile(path.Join(real, e.Name()))
		if err != nil {
			continue // a dangling link, say: not ours to judge
		}
		for der := range pemDERs(data) {
			have[der] = true
		}
		have[string(data)] = true // a DER file
	}
	added := 0
	for _, c := range in.certs {
		if have[string(c.Raw)] {
			continue
		}
		name := path.Join(real, fileStem(c)+".crt")
		if err := in.writeFile(name, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})); err != nil {
			return err
		}
		added++
	}
	if added > 0 {
		in.rep.Changes = append(in.rep.Changes, Change{Path: real, Kind: KindAnchor, Added: added})
	}
	return nil
}

// caDir makes sure the CA directory dir, if it exists, holds a file with each
// certificate, and rehashes it as openssl rehash would.
func (in *installer) caDir(dir string) error {
	real, _, claimed, err := in.claim(dir, true)
	if err != nil || !claimed {
		return err
	}
	if in.rep.CADir == "" {
		in.rep.CADir = dir
	}
	ops, files, warnings, err := planRehash(in.fsys, real)
	if err != nil {
		return err
	}
	// A certificate is present when a file of its own holds it. A bundle we edit does
	// not count even when it holds one certificate now: once it holds more, openssl
	// rehash drops its link.
	present := map[[sha1.Size]byte]bool{}
	for name, d := range files {
		if r, err := in.fsys.EvalSymlinks(path.Join(real, name)); err == nil && in.done[path.Join("/", r)] {
			continue
		}
		present[d] = true
	}
	ours := map[[sha1.Size]byte]bool{}
	added := 0
	for _, c := range in.certs {
		d := sha1.Sum(c.Raw)
		ours[d] = true
		if present[d] {
			continue
		}
		name := path.Join(real, fileStem(c)+".pem")
		if err := in.writeFile(name, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})); err != nil {
			return err
		}
		added++
	}
	if added > 0 {
		if ops, _, warnings, err = planRehash(in.fsys, real); err != nil {
			return err
		}
	} else {
		// Rehash only when one of our certificates lacks its link: the directory is not
		// ours to tidy otherwise.
		need := false
		for _, op := range ops {
			if d, ok := files[op.target]; ok && op.target != "" && ours[d] {
				need = true
			}
		}
		if !need {
			return nil
		}
	}
	for _, w := range warnings {
		in.warn("%s", w)
	}
	created, removed, err := applyRehash(in.fsys, real, ops)
	if err != nil {
		return err
	}
	if added > 0 || created > 0 || removed > 0 {
		in.rep.Changes = append(in.rep.Changes, Change{Path: real, Kind: KindCADir, Added: added, Links: created, RemovedLinks: removed})
	}
	return nil
}

type walkResult struct {
	certifi []string // .../certifi/cacert.pem
	java    []string // .../lib/security/cacerts
}

// walk finds Python certifi bundles and JDK trust stores anywhere in the image (outside
// /proc, /sys and /dev), without following symbolic links to directories.
func (in *installer) walk() (walkResult, error) {
	var res walkResult
	var visit func(dir string, depth int) error
	visit = func(dir string, depth int) error {
		if err := in.ctx.Err(); err != nil {
			return err
		}
		if depth > maxWalkDepth {
			return nil
		}
		ents, err := in.fsys.ReadDir(dir)
		if err != nil {
			return nil // unreadable: nothing to find there
		}
		for _, e := range ents {
			p := path.Join(dir, e.Name())
			switch {
			case e.IsDir():
				if p == "/proc" || p == "/sys" || p == "/dev" {
					continue
				}
				if e.Name() == "certifi" {
					if info, err := in.fsys.Lstat(path.Join(p, "cacert.pem")); err == nil && !info.IsDir() {
						res.certifi = append(res.certifi, path.Join(p, "cacert.pem"))
					}
				}
				if err := visit(p, depth+1); err != nil {
					return err
				}
			case e.Name() == "cacerts" && path.Base(dir) == "security" && path.Base(path.Dir(dir)) == "lib":
				res.java = append(res.java, p)
			}
		}
		return nil
	}
	err := visit("/", 0)
	return res, err
}

// Summary describes the report for people, one line per changed store after a first line
// with the totals, e.g. "2 CA certificates: 4 of 4 trust stores changed". Warnings are
// left to the caller (they are in r.Warnings).
func (r *Report) Summary() []string {
	if r == nil {
		return nil
	}
	plural := func(n int, one, many string) string {
		if n == 1 {
			return fmt.Sprintf("%d %s", n, one)
		}
		return fmt.Sprintf("%d %s", n, many)
	}
	lines := []string{fmt.Sprintf("%s: %d of %s changed", plural(r.Certificates, "CA certificate", "CA certificates"), len(r.Changes), plural(r.Stores, "trust store", "trust stores"))}
	for _, c := range r.Changes {
		l := fmt.Sprintf("  %s (%s): %s added", c.Path, c.Kind, plural(c.Added, "certificate", "certificates"))
		if c.Created {
			l += ", file created"
		}
		if c.Links > 0 {
			l += ", " + plural(c.Links, "hash link", "hash links") + " made"
		}
		if c.RemovedLinks > 0 {
			l += ", " + plural(c.RemovedLinks, "stale hash link", "stale hash links") + " removed"
		}
		lines = append(lines, l)
	}
	return lines
}
