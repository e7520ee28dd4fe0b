package layerapply

import (
	"archive/tar"
	"cmp"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// What ext4 (4 KiB blocks, no ea_inode) and the kernel can hold. An entry's extended
// attributes must fit in one xattr block: a 32-byte header, 16 bytes per entry plus its
// name suffix, values, all padded to 4 bytes, and a 4-byte terminator. (The inode's own
// spare bytes hold a few more in practice; counting only the block keeps the rule the
// same for every sink and sure to fit.)
const (
	xattrBlockSpace = 4096 - 32 - 4
	xattrNameMax    = 255  // XATTR_NAME_MAX, the whole name with its prefix
	pathMax         = 4095 // PATH_MAX less the terminating NUL: longest name or symlink target
	nameMax         = 255  // NAME_MAX: longest path element
)

// Action says what Apply did with something an image carries that the output cannot hold
// faithfully.
type Action string

const (
	// ActionDropped means an extended attribute was left out; the entry itself was written.
	ActionDropped Action = "dropped"
	// ActionSkipped means a whole entry was left out.
	ActionSkipped Action = "skipped"
	// ActionChanged means an attribute was rewritten to a form with the same meaning (an ACL
	// sorted into the order the kernel reads it in).
	ActionChanged Action = "changed"
)

// Warning records one attribute or entry that Apply dropped, skipped or changed rather than
// write something the kernel would read differently, or refuse the whole image. See
// [WithWarnings] and [WithStrict].
type Warning struct {
	// Layer is the layer's digest ("added" for [Merger.Add]).
	Layer string `json:"layer"`
	// Path is the entry's name as the layer gave it.
	Path string `json:"path"`
	// Attr is the extended attribute's name, or "" when the whole entry is concerned.
	Attr string `json:"attr,omitempty"`
	// Action is what was done.
	Action Action `json:"action"`
	// Reason says why, in words.
	Reason string `json:"reason"`
}

// String returns "PATH: ATTR ACTION: REASON", the path shortened when it is very long.
func (w Warning) String() string {
	p := w.Path
	if len(p) > 120 {
		p = p[:60] + "…" + p[len(p)-59:]
	}
	if w.Attr == "" {
		return fmt.Sprintf("%s: %s: %s", p, w.Action, w.Reason)
	}
	return fmt.Sprintf("%s: %s %s: %s", p, w.Attr, w.Action, w.Reason)
}

// kv is one extended attribute, its full name ("user.mime_type") and its value.
type kv struct {
	name, value string
}

// note is what the policy did to one attribute, before it is tied to a layer and path.
type note struct {
	attr   string
	action Action
	reason string
}

// xattrPolicy decides which of an entry's extended attributes the output gets, as ext4
// and the kernel can hold and mean them: xs in, what to keep (sorted by name) and what was
// dropped or changed out. typ is the entry's tar type. It is the one place that decides,
// so every sink writes the same attributes:
//
//   - names: only user., trusted. and security. with a non-empty suffix, and the two POSIX
//     ACLs, whole name at most 255 bytes; user.* only on regular files and directories.
//   - security.capability: v1 and v2 kept; v3 for the namespace root uid 0 turned into v2;
//     v3 for any other root uid dropped (it would grant the capability to real root);
//     malformed blobs dropped.
//   - ACLs: none on symbolic links, default ACLs only on directories, validated as the
//     kernel does, sorted into canonical order when valid but out of order.
//   - size: all kept attributes fit in one 4 KiB xattr block; when they do not,
//     attributes are dropped, largest first.
func xattrPolicy(typ byte, xs []kv) (keep []kv, notes []note) {
	keep = make([]kv, 0, len(xs))
	for _, x := range xs {
		v, n := xattrRule(typ, x.name, x.value)
		if n != nil {
			notes = append(notes, *n)
		}
		if n == nil || n.action == ActionChanged {
			keep = append(keep, kv{x.name, v})
		}
	}
	slices.SortStableFunc(keep, func(a, b kv) int { return strings.Compare(a.name, b.name) })
	keep = slices.CompactFunc(keep, func(a, b kv) bool { return a.name == b.name }) // the first of a name wins
	// Fit the block: drop the largest attributes first (ties by name), so that what is
	// kept does not depend on the order the tar gave.
	for xattrSpace(keep) > xattrBlockSpace {
		i := 0
		for j := range keep {
			if c := cmp.Compare(xattrCost(keep[j]), xattrCost(keep[i])); c > 0 || c == 0 && keep[j].name > keep[i].name {
				i = j
			}
		}
		notes = append(notes, note{keep[i].name, ActionDropped, fmt.Sprintf("the entry's attributes together exceed one %d-byte ext4 xattr block", 4096)})
		keep = slices.Delete(keep, i, i+1)
	}
	return keep, notes
}

// xattrRule applies the per-attribute rules to one attribute. A nil note keeps the value
// as is; a ActionChanged note keeps the returned value; any other note drops the attribute.
func xattrRule(typ byte, name, v string) (string, *note) {
	drop := func(format string, args ...any) (string, *note) {
		return "", &note{name, ActionDropped, fmt.Sprintf(format, args...)}
	}
	if strings.IndexByte(name, 0) >= 0 {
		return drop("the name holds a NUL byte")
	}
	if len(name) > xattrNameMax {
		return drop("the name is %d bytes, longer than %d", len(name), xattrNameMax)
	}
	switch {
	case name == aclAccess || name == aclDefault:
		return aclRule(typ, name, v)
	case strings.HasPrefix(name, "user."), strings.HasPrefix(name, "trusted."), strings.HasPrefix(name, "security."):
		if name == "user." || name == "trusted." || name == "security." {
			return drop("the name has a namespace but no suffix")
		}
	default:
		return drop("ext4 has no %q attribute namespace", namespaceOf(name))
	}
	if strings.HasPrefix(name, "user.") && typ != tar.TypeReg && typ != tar.TypeDir {
		return drop("the kernel allows user.* attributes only on regular files and directories")
	}
	if c := xattrCost(kv{name, v}); c > xattrBlockSpace {
		return drop("the value is %d bytes; ext4 without ea_inode holds at most one %d-byte block of attributes", len(v), 4096)
	}
	if name == "security.capability" {
		return capabilityRule(v)
	}
	return v, nil
}

func namespaceOf(name string) string {
	if i := strings.IndexByte(name, '.'); i >= 0 {
		return name[:i+1]
	}
	return name
}

// aclRule keeps a POSIX ACL that the kernel would accept on an entry of type typ, sorted
// into canonical order.
func aclRule(typ byte, name, v string) (string, *note) {
	switch {
	case typ == tar.TypeSymlink:
		return "", &note{name, ActionDropped, "symbolic links cannot carry ACLs"}
	case name == aclDefault && typ != tar.TypeDir:
		return "", &note{name, ActionDropped, "only directories can carry a default ACL"}
	}
	out, sorted, err := canonicalACL(v)
	if err != nil {
		return "", &note{name, ActionDropped, err.Error() + "; the kernel would refuse it"}
	}
	if sorted {
		return out, &note{name, ActionChanged, "entries sorted into canonical order, the order the kernel checks them in"}
	}
	return out, nil
}

// File capabilities (security.capability): a little-endian magic whose top byte is the
// revision and whose bit 0 is the effective flag, then permitted/inheritable words, and for
// v3 the root uid of the user namespace the capability belongs to.
const (
	capRevisionMask = 0xff000000
	capRevision1    = 0x01000000 // 12 bytes: 32-bit sets
	capRevision2    = 0x02000000 // 20 bytes: 64-bit sets
	capRevision3    = 0x03000000 // 24 bytes: v2 plus rootid
)

// capabilityRule keeps what the kernel reads as the capability the image meant: v1 and v2
// as they are, v3 for root uid 0 as v2. A v3 capability for another root uid was meant for
// a user namespace's root only (a rootless build); written as v2, or as v3 read from the
// initial namespace, it would mean something else, so it is dropped. The file keeps its
// mode either way.
func capabilityRule(v string) (string, *note) {
	drop := func(format string, args ...any) (string, *note) {
		return "", &note{"security.capability", ActionDropped, fmt.Sprintf(format, args...)}
	}
	if len(v) < 4 {
		return drop("a %d-byte capability is malformed", len(v))
	}
	magic := binary.LittleEndian.Uint32([]byte(v[:4]))
	want := map[uint32]int{capRevision1: 12, capRevision2: 20, capRevision3: 24}[magic&capRevisionMask]
	switch {
	case want == 0:
		return drop("capability revision %#x is unknown", magic>>24)
	case len(v) != want:
		return drop("a revision %d capability is %d bytes, want %d", magic>>24, len(v), want)
	case magic&capRevisionMask != capRevision3:
		return v, nil
	}
	if rootid := binary.LittleEndian.Uint32([]byte(v[20:])); rootid != 0 {
		return drop("a v3 capability for user-namespace root uid %d would grant it to real root", rootid)
	}
	b := []byte(v[:20])
	binary.LittleEndian.PutUint32(b, capRevision2|magic&^capRevisionMask)
	return string(b), nil
}

// xattrCost is what one attribute takes in an ext4 xattr block: the entry with its name
// suffix and the value, each padded to 4 bytes. ACLs are counted in the VFS format, which
// is never shorter than ext4's.
func xattrCost(x kv) int {
	suffix := x.name
	switch {
	case x.name == aclAccess || x.name == aclDefault:
		suffix = ""
	case strings.HasPrefix(x.name, "user."):
		suffix = x.name[len("user."):]
	case strings.HasPrefix(x.name, "trusted."):
		suffix = x.name[len("trusted."):]
	case strings.HasPrefix(x.name, "security."):
		suffix = x.name[len("security."):]
	}
	return (16+len(suffix)+3)&^3 + (len(x.value)+3)&^3
}

func xattrSpace(xs []kv) int {
	n := 0
	for _, x := range xs {
		n += xattrCost(x)
	}
	return n
}

// entryRule says why an entry cannot be written as given, or "" when it can: a name or a
// link target longer than PATH_MAX allows, or a path element longer than 255 bytes. name
// is the cleaned name; linkname the symbolic or hard link target.
func entryRule(typ byte, name, linkname string) string {
	if len(name) > pathMax {
		return fmt.Sprintf("the path is %d bytes, longer than %d", len(name), pathMax)
	}
	if e := longElement(name); e != "" {
		return fmt.Sprintf("a path element is %d bytes, longer than %d", len(e), nameMax)
	}
	switch typ {
	case tar.TypeSymlink:
		if len(linkname) > pathMax {
			return fmt.Sprintf("the symbolic link target is %d bytes, longer than %d", len(linkname), pathMax)
		}
	case tar.TypeLink:
		if len(linkname) > pathMax || longElement(linkname) != "" {
			return "the hard link target is a path that could not be written"
		}
	}
	return ""
}

func longElement(name string) string {
	for rest := name; rest != ""; {
		elem, after, _ := strings.Cut(rest, "/")
		if len(elem) > nameMax {
			return elem
		}
		rest = after
	}
	return ""
}

// PAX records that carry extended attributes and ACLs.
const (
	libarchiveXattrPrefix = "LIBARCHIVE.xattr."
	schilyACLAccess       = "SCHILY.acl.access"
	schilyACLDefault      = "SCHILY.acl.default"
	schilyACLNFS4         = "SCHILY.acl.ace"
)

// collectXattrs gathers the extended attributes of a tar member from its PAX records, in
// sorted record order: SCHILY.xattr.NAME (raw values), LIBARCHIVE.xattr.NAME (URL-escaped
// names, base64 values) and the text ACLs of GNU tar and star (SCHILY.acl.access and
// SCHILY.acl.default, converted to the VFS format). When two records give the same
// attribute, SCHILY.xattr wins over LIBARCHIVE.xattr, which wins over a text ACL. Records
// that cannot be decoded are dropped with a note. The names and values of the records
// together may not pass limit bytes. names resolves the users and groups that text ACLs
// give by name (see [textACL]).
func collectXattrs(recs map[string]string, limit int, names func(group bool, name string) (uint32, bool)) ([]kv, []note, error) {
	keys := make([]string, 0, len(recs))
	total := 0
	for k, v := range recs {
		if strings.HasPrefix(k, XattrPrefix) || strings.HasPrefix(k, libarchiveXattrPrefix) || strings.HasPrefix(k, "SCHILY.acl.") {
			keys = append(keys, k)
			total += len(k) + len(v)
		}
	}
	if len(keys) == 0 {
		return nil, nil, nil
	}
	if total > limit {
		return nil, nil, &LimitError{What: "xattr size", Limit: int64(limit)}
	}
	slices.Sort(keys)
	var xs, lib, text []kv
	var notes []note
	for _, k := range keys {
		v := recs[k]
		switch {
		case strings.HasPrefix(k, XattrPrefix):
			xs = append(xs, kv{k[len(XattrPrefix):], v})
		case strings.HasPrefix(k, libarchiveXattrPrefix):
			n, err := url.PathUnescape(k[len(libarchiveXattrPrefix):])
			if err != nil {
				notes = append(notes, note{k, ActionDropped, "the LIBARCHIVE.xattr name is not URL-encoded"})
				continue
			}
			val, err := base64.StdEncoding.DecodeString(v)
			if err != nil {
				if val, err = base64.RawStdEncoding.DecodeString(v); err != nil {
					notes = append(notes, note{n, ActionDropped, "the LIBARCHIVE.xattr value is not base64"})
					continue
				}
			}
			lib = append(lib, kv{n, string(val)})
		case k == schilyACLAccess || k == schilyACLDefault:
			name := aclAccess
			if k == schilyACLDefault {
				name = aclDefault
			}
			if strings.TrimSpace(v) == "" {
				continue // star writes empty records for files without ACLs
			}
			acl, err := textACL(v, names)
			if err != nil {
				notes = append(notes, note{name, ActionDropped, k + ": " + err.Error()})
				continue
			}
			text = append(text, kv{name, acl})
		case k == schilyACLNFS4:
			notes = append(notes, note{k, ActionDropped, "ext4 cannot hold NFSv4 ACLs"})
		default:
			notes = append(notes, note{k, ActionDropped, "unknown ACL record"})
		}
	}
	return append(append(xs, lib...), text...), notes, nil
}
