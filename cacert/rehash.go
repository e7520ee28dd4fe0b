package cacert

import (
	"crypto/sha1"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/img2ext4/img2ext4/layerapply"
)

// This file ports `openssl rehash` (apps/rehash.c, OpenSSL 3) to a [layerapply.RootFS], so the
// links it leaves are the ones the real tool would leave: files are read in byte order of
// their names; a file counts when its extension is .pem, .crt, .cer or .crl (any case) and
// it holds exactly one certificate or CRL; duplicates (same SHA-1 of the DER) are skipped;
// an existing "<hash>.N" link is kept when N is below the number of links its hash needs,
// new links take the lowest free N, and links no longer needed are removed.

const (
	typeCert = 0
	typeCRL  = 1

	maxCollisions = 256     // MAX_COLLISIONS
	maxCertFile   = 8 << 20 // files larger than this are not read as certificates
)

var suffixes = [...]string{"", "r"}

type hentry struct {
	filename    string
	oldID       int // -1: no existing link
	needSymlink bool
	digest      [sha1.Size]byte
}

type bucket struct {
	typ       int
	hash      uint32
	entries   []*hentry
	numNeeded int
}

// linkOp is one change rehash makes in a directory.
type linkOp struct {
	name   string // link name in the directory
	target string // "" to remove name
}

type rehasher struct {
	fsys     layerapply.RootFS
	dir      string
	buckets  map[[2]uint32]*bucket
	order    [][2]uint32
	warnings []string
	// files maps each file holding exactly one certificate to the SHA-1 of its DER.
	files map[string][sha1.Size]byte
}

// planRehash reads the directory dir and returns the link changes `openssl rehash dir`
// would make, the certificate files it considered (name → SHA-1 of the DER), and warnings
// about files it could not read.
func planRehash(fsys layerapply.RootFS, dir string) (ops []linkOp, files map[string][sha1.Size]byte, warnings []string, err error) {
	ents, err := fsys.ReadDir(dir)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("cacert: rehash %s: %w", dir, err)
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names) // strcmp order, as rehash sorts
	r := &rehasher{fsys: fsys, dir: dir, buckets: map[[2]uint32]*bucket{}, files: map[string][sha1.Size]byte{}}
	for _, name := range names {
		p := path.Join(dir, name)
		info, err := fsys.Lstat(p)
		if err != nil {
			continue
		}
		if info.Mode()&fs.ModeSymlink != 0 && r.handleSymlink(name, p) {
			continue
		}
		r.doFile(name, p)
	}
	return r.finish(), r.files, r.warnings, nil
}

// parseHashName parses "<8 hex>.[r]N" like rehash's handle_symlink.
func parseHashName(name string) (typ int, hash uint32, id int, ok bool) {
	if len(name) < 9 || name[8] != '.' {
		return 0, 0, 0, false
	}
	h, err := strconv.ParseUint(name[:8], 16, 32)
	if err != nil || strings.ContainsAny(name[:8], "+-xX") {
		return 0, 0, 0, false
	}
	rest := name[9:]
	if len(rest) > 0 && (rest[0] == 'r' || rest[0] == 'R') {
		typ, rest = typeCRL, rest[1:]
	}
	// strtoul: an empty number is 0; anything but digits after it fails.
	n := 0
	for i := 0; i < len(rest); i++ {
		c := rest[i]
		if c < '0' || c > '9' {
			return 0, 0, 0, false
		}
		n = (n*10 + int(c-'0')) & 0xffff // old_id is an unsigned short
	}
	return typ, uint32(h), n, true
}

func (r *rehasher) handleSymlink(name, p string) bool {
	typ, hash, id, ok := parseHashName(name)
	if !ok {
		return false
	}
	target, err := r.fsys.Readlink(p)
	if err != nil || len(target) >= 4096 {
		return false
	}
	return r.addEntry(typ, hash, target, nil, false, id)
}

func (r *rehasher) doFile(name, p string) {
	ext := path.Ext(name)
	if ext == "" {
		return
	}
	switch strings.ToLower(ext[1:]) {
	case "pem", "crt", "cer", "crl":
	default:
		return
	}
	f, err := r.fsys.Open(p)
	if err != nil {
		r.warnings = append(r.warnings, fmt.Sprintf("rehash %s: skipping %s, cannot open file: %v", r.dir, name, err))
		return
	}
	data, err := io.ReadAll(io.LimitReader(f, maxCertFile+1))
	f.Close()
	if err != nil || len(data) > maxCertFile {
		return
	}
	typ, der, rawName, ok := singleObject(data)
	if !ok {
		return
	}
	hash, err := SubjectHash(rawName)
	if err != nil {
		return // OpenSSL cannot load such a name either
	}
	d := sha1.Sum(der)
	if typ == typeCert {
		r.files[name] = d
	}
	r.addEntry(typ, hash, name, &d, true, -1)
}

// singleObject reads data as PEM_X509_INFO_read_bio would and reports the one certificate
// or CRL in it; ok is false unless there is exactly one.
func singleObject(data []byte) (typ int, der, rawName []byte, ok bool) {
	// PEM_X509_INFO_read_bio: a certificate, a CRL and a key share one entry until a
	// second of the same kind starts the next.
	type info struct {
		cert, crl, key  bool
		der, name       []byte
		crlDER, crlName []byte
	}
	var infos []info
	var cur info
	next := func() {
		infos = append(infos, cur)
		cur = info{}
	}
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		switch b.Type {
		case "CERTIFICATE", "X509 CERTIFICATE", "TRUSTED CERTIFICATE":
			d := b.Bytes
			if b.Type == "TRUSTED CERTIFICATE" {
				var err error
				if d, err = splitTrusted(d); err != nil {
					return 0, nil, nil, false
				}
			}
			name, err := rawSubject(d)
			if err != nil {
				return 0, nil, nil, false // the whole read fails in OpenSSL
			}
			if cur.cert {
				next()
			}
			cur.cert, cur.der, cur.name = true, d, name
		case "X509 CRL":
			name, err := crlIssuer(b.Bytes)
			if err != nil {
				return 0, nil, nil, false
			}
			if cur.crl {
				next()
			}
			cur.crl, cur.crlDER, cur.crlName = true, b.Bytes, name
		case "RSA PRIVATE KEY", "DSA PRIVATE KEY", "EC PRIVATE KEY", "PRIVATE KEY", "ENCRYPTED PRIVATE KEY":
			if cur.key {
				next()
			}
			cur.key = true
		}
	}
	if cur.cert || cur.crl || cur.key {
		next()
	}
	if len(infos) != 1 || (!infos[0].cert && !infos[0].crl) {
		return 0, nil, nil, false
	}
	if infos[0].cert {
		return typeCert, infos[0].der, infos[0].name, true
	}
	return typeCRL, infos[0].crlDER, infos[0].crlName, true
}

// crlIssuer returns the DER issuer name of a DER CRL (TBSCertList: optional version, then
// signature, then issuer).
func crlIssuer(der []byte) ([]byte, error) {
	fields, err := tbsFields(der)
	if err != nil {
		return nil, err
	}
	i := 1
	if len(fields) > 0 && len(fields[0]) > 0 && fields[0][0] == 0x02 { // INTEGER version
		i = 2
	}
	if len(fields) <= i {
		return nil, errors.New("truncated CRL")
	}
	return fields[i], nil
}

func (r *rehasher) addEntry(typ int, hash uint32, filename string, digest *[sha1.Size]byte, needSymlink bool, oldID int) bool {
	key := [2]uint32{uint32(typ), hash}
	bp := r.buckets[key]
	if bp == nil {
		bp = &bucket{typ: typ, hash: hash}
		r.buckets[key] = bp
		r.order = append(r.order, key)
	}
	var found *hentry
	for _, ep := range bp.entries {
		if digest != nil && *digest == ep.digest && ep.needSymlink {
			return true // "skipping duplicate": not an error, and the file is not linked
		}
		if filename == ep.filename {
			found = ep
			if digest == nil {
				break
			}
		}
	}
	ep := found
	if ep == nil {
		if bp.numNeeded >= maxCollisions {
			r.warnings = append(r.warnings, fmt.Sprintf("rehash %s: hash table overflow for %s", r.dir, filename))
			return false
		}
		ep = &hentry{filename: filename, oldID: -1}
		bp.entries = append(bp.entries, ep)
	}
	if oldID >= 0 && (ep.oldID < 0 || oldID < ep.oldID) {
		ep.oldID = oldID
	}
	if needSymlink && !ep.needSymlink {
		ep.needSymlink = true
		bp.numNeeded++
		ep.digest = *digest
	}
	return true
}

func (r *rehasher) finish() []linkOp {
	sort.Slice(r.order, func(i, j int) bool {
		a, b := r.order[i], r.order[j]
		return a[0] < b[0] || a[0] == b[0] && a[1] < b[1]
	})
	var ops []linkOp
	for _, key := range r.order {
		bp := r.buckets[key]
		used := map[int]bool{}
		for _, ep := range bp.entries {
			if ep.oldID >= 0 && ep.oldID < bp.numNeeded {
				used[ep.oldID] = true
			}
		}
		next := 0
		for _, ep := range bp.entries {
			switch {
			case ep.oldID >= 0 && ep.oldID < bp.numNeeded:
				// the link exists and is used as it is
			case ep.needSymlink:
				for used[next] {
					next++
				}
				ops = append(ops, linkOp{name: fmt.Sprintf("%08x.%s%d", bp.hash, suffixes[bp.typ], next), target: ep.filename})
				used[next] = true
			default:
				id := ep.oldID
				if id < 0 {
					id = 0xffff
				}
				ops = append(ops, linkOp{name: fmt.Sprintf("%08x.%s%d", bp.hash, suffixes[bp.typ], id)})
			}
		}
	}
	return ops
}

// applyRehash carries out ops in dir. It never removes a directory.
func applyRehash(fsys layerapply.RootFS, dir string, ops []linkOp) (created, removed int, err error) {
	for _, op := range ops {
		p := path.Join(dir, op.name)
		info, lerr := fsys.Lstat(p)
		if lerr == nil && info.IsDir() {
			return created, removed, fmt.Errorf("cacert: rehash %s: %s is a directory; remove it and convert again", dir, op.name)
		}
		if lerr == nil {
			if err := fsys.RemoveAll(p); err != nil {
				return created, removed, fmt.Errorf("cacert: rehash %s: remove %s: %w", dir, op.name, err)
			}
			if op.target == "" {
				removed++
			}
		}
		if op.target != "" {
			if err := fsys.Symlink(op.target, p); err != nil {
				return created, removed, fmt.Errorf("cacert: rehash %s: link %s -> %s: %w", dir, op.name, op.target, err)
			}
			created++
		}
	}
	return created, removed, nil
}
