package layerapply

import (
	"archive/tar"
	"bytes"
	"io"
	"strconv"
	"strings"
)

// accounts holds the user and group names of the image's /etc/passwd and /etc/group as
// merged so far. GNU tar --acls writes the users and groups of named ACL entries by name,
// and resolves them when it extracts, on the system the files land in; for an image that
// system is the image itself, so the names resolve against its own account files.
type accounts struct {
	users, groups map[string]uint32
}

// maxAccountFile bounds what is kept of an account file.
const maxAccountFile = 4 << 20

// capture returns body, read through a copy that replaces the known users (for
// etc/passwd) or groups (for etc/group) once the sink has read it all. name is the
// resolved name of a regular file entry.
func (c *accounts) capture(name string, hdr *tar.Header, body io.Reader) io.Reader {
	var dst *map[string]uint32
	switch name {
	case "etc/passwd":
		dst = &c.users
	case "etc/group":
		dst = &c.groups
	default:
		return body
	}
	if hdr.Typeflag != tar.TypeReg || hdr.Size > maxAccountFile {
		return body
	}
	r := &accountReader{r: body, size: hdr.Size, dst: dst}
	if hdr.Size == 0 {
		r.parse()
	}
	return r
}

// lookup returns the id of the user (group false) or group (group true) called name.
func (c *accounts) lookup(group bool, name string) (uint32, bool) {
	m := c.users
	if group {
		m = c.groups
	}
	id, ok := m[name]
	return id, ok
}

type accountReader struct {
	r    io.Reader
	size int64
	buf  []byte
	dst  *map[string]uint32
}

func (a *accountReader) Read(p []byte) (int, error) {
	n, err := a.r.Read(p)
	if a.dst != nil {
		a.buf = append(a.buf, p[:n]...)
		if int64(len(a.buf)) >= a.size {
			a.parse()
		}
	}
	return n, err
}

// parse reads "name:password:id:..." lines, as passwd(5) and group(5) have them.
func (a *accountReader) parse() {
	m := map[string]uint32{}
	for line := range bytes.Lines(a.buf) {
		f := strings.SplitN(strings.TrimSpace(string(line)), ":", 4)
		if len(f) < 3 || f[0] == "" || strings.HasPrefix(f[0], "#") {
			continue
		}
		id, err := strconv.ParseUint(f[2], 10, 32)
		if err != nil {
			continue
		}
		if _, dup := m[f[0]]; !dup { // the first line of a name wins, as getpwnam's
			m[f[0]] = uint32(id)
		}
	}
	*a.dst = m
	a.dst, a.buf = nil, nil
}
