package layerapply

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// POSIX ACLs as extended attributes: the VFS ("xattr") format, version 2, that
// getxattr(2) returns and tar's SCHILY.xattr.system.posix_acl_* records carry. A 4-byte
// little-endian version, then 8-byte entries: tag (u16), permissions (u16), id (u32).
const (
	aclAccess  = "system.posix_acl_access"
	aclDefault = "system.posix_acl_default"

	aclVersion = 2

	aclUserObj  = 0x01
	aclUser     = 0x02
	aclGroupObj = 0x04
	aclGroup    = 0x08
	aclMask     = 0x10
	aclOther    = 0x20

	aclUndefinedID = 0xffffffff
)

// aclEntry is one decoded ACL entry.
type aclEntry struct {
	tag  uint16
	perm uint16
	id   uint32
}

// canonicalACL checks an ACL in the VFS format the way the kernel's posix_acl_valid and
// libacl's acl_valid do, and returns it in canonical order (by tag, then by id), the order
// in which the kernel's permission check reads it. sorted reports that the input was out
// of that order. The error says why the ACL is not valid.
func canonicalACL(v string) (out string, sorted bool, err error) {
	es, err := decodeACL(v)
	if err != nil {
		return "", false, err
	}
	if err := validACL(es); err != nil {
		return "", false, err
	}
	if slices.IsSortedFunc(es, compareACLEntries) {
		return v, false, nil
	}
	slices.SortStableFunc(es, compareACLEntries)
	return encodeACL(es), true, nil
}

func decodeACL(v string) ([]aclEntry, error) {
	le := binary.LittleEndian
	if len(v) < 4 || (len(v)-4)%8 != 0 {
		return nil, fmt.Errorf("ACL of %d bytes is not a 4-byte header and 8-byte entries", len(v))
	}
	if ver := le.Uint32([]byte(v[:4])); ver != aclVersion {
		return nil, fmt.Errorf("ACL version %d, want %d", ver, aclVersion)
	}
	if len(v) == 4 {
		return nil, errors.New("ACL has no entries")
	}
	es := make([]aclEntry, 0, (len(v)-4)/8)
	for p := []byte(v[4:]); len(p) > 0; p = p[8:] {
		es = append(es, aclEntry{tag: le.Uint16(p), perm: le.Uint16(p[2:]), id: le.Uint32(p[4:])})
	}
	return es, nil
}

func encodeACL(es []aclEntry) string {
	le := binary.LittleEndian
	b := make([]byte, 4+8*len(es))
	le.PutUint32(b, aclVersion)
	for i, e := range es {
		p := b[4+8*i:]
		le.PutUint16(p, e.tag)
		le.PutUint16(p[2:], e.perm)
		le.PutUint32(p[4:], e.id)
	}
	return string(b)
}

func compareACLEntries(a, b aclEntry) int {
	if a.tag != b.tag {
		return int(a.tag) - int(b.tag)
	}
	if a.tag == aclUser || a.tag == aclGroup {
		switch {
		case a.id < b.id:
			return -1
		case a.id > b.id:
			return 1
		}
	}
	return 0
}

// validACL applies the rules of posix_acl_valid, whatever the order of es: known tags,
// permissions within rwx, USER_OBJ, GROUP_OBJ and OTHER exactly once, at most one MASK and
// one whenever a named USER or GROUP exists, named ids defined and not repeated.
func validACL(es []aclEntry) error {
	var count [0x21]int
	users := map[uint32]bool{}
	groups := map[uint32]bool{}
	for _, e := range es {
		if e.perm&^7 != 0 {
			return fmt.Errorf("ACL entry with permissions %#o beyond rwx", e.perm)
		}
		switch e.tag {
		case aclUserObj, aclGroupObj, aclMask, aclOther:
		case aclUser, aclGroup:
			if e.id == aclUndefinedID {
				return errors.New("ACL names the undefined id 4294967295")
			}
			seen := users
			if e.tag == aclGroup {
				seen = groups
			}
			if seen[e.id] {
				return fmt.Errorf("ACL names %s %d twice", aclTagName(e.tag), e.id)
			}
			seen[e.id] = true
		default:
			return fmt.Errorf("ACL tag %#x is unknown", e.tag)
		}
		count[e.tag]++
	}
	for _, tag := range []uint16{aclUserObj, aclGroupObj, aclOther} {
		if count[tag] != 1 {
			return fmt.Errorf("ACL has %d %s:: entries, want exactly one", count[tag], aclTagName(tag))
		}
	}
	if count[aclMask] > 1 {
		return fmt.Errorf("ACL has %d mask entries", count[aclMask])
	}
	if count[aclUser]+count[aclGroup] > 0 && count[aclMask] == 0 {
		return errors.New("ACL names users or groups but has no mask entry")
	}
	return nil
}

func aclTagName(tag uint16) string {
	switch tag {
	case aclUserObj, aclUser:
		return "user"
	case aclGroupObj, aclGroup:
		return "group"
	case aclMask:
		return "mask"
	case aclOther:
		return "other"
	}
	return fmt.Sprintf("tag %#x", tag)
}

// textACL converts the text form of an ACL that GNU tar (--acls) and star write in
// SCHILY.acl.access and SCHILY.acl.default records ("user::rwx,user:1000:r-x,group::r-x,
// mask::r-x,other::r-x", entries separated by commas or newlines, "#" comments, tags
// abbreviated or not, star's numeric id as a fourth field) into the VFS format. A user or
// group given by name is resolved with names (nil resolves none), as tar resolves it on
// the system it extracts to; failing that, star's numeric id is used; failing that, it is
// an error. The result is not validated: that is [canonicalACL]'s job.
func textACL(text string, names func(group bool, name string) (uint32, bool)) (string, error) {
	var es []aclEntry
	for field := range strings.FieldsFuncSeq(text, func(r rune) bool { return r == ',' || r == '\n' }) {
		if i := strings.IndexByte(field, '#'); i >= 0 {
			field = field[:i]
		}
		field = strings.TrimSpace(field)
		if field == "" {
			continue
		}
		e, err := textACLEntry(field, names)
		if err != nil {
			return "", err
		}
		es = append(es, e)
	}
	if len(es) == 0 {
		return "", errors.New("text ACL has no entries")
	}
	return encodeACL(es), nil
}

func textACLEntry(s string, names func(group bool, name string) (uint32, bool)) (aclEntry, error) {
	parts := strings.Split(s, ":")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	if len(parts) > 0 && (parts[0] == "default" || parts[0] == "d") {
		parts = parts[1:] // the record says which ACL it is
	}
	if len(parts) < 2 || len(parts) > 4 {
		return aclEntry{}, fmt.Errorf("text ACL entry %q is not tag:qualifier:permissions", s)
	}
	var e aclEntry
	named := false
	switch parts[0] {
	case "user", "u":
		e.tag, named = aclUserObj, true
	case "group", "g":
		e.tag, named = aclGroupObj, true
	case "mask", "m":
		e.tag = aclMask
	case "other", "o":
		e.tag = aclOther
	default:
		return aclEntry{}, fmt.Errorf("text ACL entry %q has unknown tag %q", s, parts[0])
	}
	qual, perms, extra := "", "", ""
	switch {
	case len(parts) == 2 && !named:
		perms = parts[1] // "mask:rwx", "other:r-x"
	case len(parts) >= 3:
		qual, perms = parts[1], parts[2]
		if len(parts) == 4 {
			extra = parts[3]
		}
	default:
		return aclEntry{}, fmt.Errorf("text ACL entry %q has no permissions", s)
	}
	p, err := textACLPerms(perms)
	if err != nil {
		return aclEntry{}, fmt.Errorf("text ACL entry %q: %v", s, err)
	}
	e.perm, e.id = p, aclUndefinedID
	if qual == "" {
		if extra != "" {
			return aclEntry{}, fmt.Errorf("text ACL entry %q has an id but no qualifier", s)
		}
		return e, nil
	}
	if !named {
		return aclEntry{}, fmt.Errorf("text ACL entry %q: %s takes no qualifier", s, parts[0])
	}
	e.tag <<= 1 // USER_OBJ -> USER, GROUP_OBJ -> GROUP
	if id, err := strconv.ParseUint(qual, 10, 32); err == nil {
		e.id = uint32(id)
		return e, nil
	}
	if names != nil {
		if id, ok := names(e.tag == aclGroup, qual); ok {
			e.id = id
			return e, nil
		}
	}
	if id, err := strconv.ParseUint(extra, 10, 32); err == nil {
		e.id = uint32(id)
		return e, nil
	}
	file := "/etc/passwd"
	if e.tag == aclGroup {
		file = "/etc/group"
	}
	return aclEntry{}, fmt.Errorf("text ACL entry %q names %s %q, which the image's %s does not list (as merged so far)", s, aclTagName(e.tag), qual, file)
}

func textACLPerms(s string) (uint16, error) {
	var p uint16
	for _, c := range s {
		var bit uint16
		switch c {
		case 'r':
			bit = 4
		case 'w':
			bit = 2
		case 'x':
			bit = 1
		case '-':
			continue
		default:
			return 0, fmt.Errorf("permission %q is not r, w, x or -", c)
		}
		if p&bit != 0 {
			return 0, fmt.Errorf("permission %q given twice", c)
		}
		p |= bit
	}
	if s == "" {
		return 0, errors.New("empty permissions")
	}
	return p, nil
}

// aclText formats a POSIX ACL in the VFS format as GNU tar writes it in SCHILY.acl.access
// and SCHILY.acl.default records: one entry a line, numeric ids.
func aclText(v string) (string, error) {
	es, err := decodeACL(v)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, e := range es {
		b.WriteString(aclTagName(e.tag))
		b.WriteByte(':')
		if e.tag == aclUser || e.tag == aclGroup {
			b.WriteString(strconv.FormatUint(uint64(e.id), 10))
		}
		b.WriteByte(':')
		for i, c := range "rwx" {
			if e.perm&(4>>i) != 0 {
				b.WriteRune(c)
			} else {
				b.WriteByte('-')
			}
		}
		b.WriteByte('\n')
	}
	return b.String(), nil
}

// addTextACLs adds to the PAX records of a tar header the text form of its ACLs, which
// GNU tar --acls restores (it ignores SCHILY.xattr.system.posix_acl_*), keeping the
// binary records that containerd and umoci restore.
func addTextACLs(recs map[string]string) {
	for xattr, text := range map[string]string{aclAccess: schilyACLAccess, aclDefault: schilyACLDefault} {
		if v, ok := recs[XattrPrefix+xattr]; ok {
			if t, err := aclText(v); err == nil {
				recs[text] = t
			}
		}
	}
}
