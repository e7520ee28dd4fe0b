package ext4writer

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"

	"github.com/img2ext4/img2ext4/ext4writer/internal/disk"
)

const (
	aclAccess  = "system.posix_acl_access"
	aclDefault = "system.posix_acl_default"
)

// xattrIndex maps a full attribute name to its ext4 name index and suffix.
func xattrIndex(name string) (uint8, string, bool) {
	switch name {
	case aclAccess:
		return 2, "", true
	case aclDefault:
		return 3, "", true
	}
	for _, p := range []struct {
		prefix string
		index  uint8
	}{{"user.", 1}, {"trusted.", 4}, {"security.", 6}} {
		if s, ok := strings.CutPrefix(name, p.prefix); ok && s != "" {
			return p.index, s, true
		}
	}
	return 0, "", false
}

// convertXattrs validates and sorts attributes the way ext4 keeps them in
// xattr blocks: by name index, then name length, then name.
func convertXattrs(m map[string][]byte) ([]xattr, error) {
	if len(m) == 0 {
		return nil, nil
	}
	xs := make([]xattr, 0, len(m))
	for name, v := range m {
		idx, suffix, ok := xattrIndex(name)
		if !ok || len(suffix) > 255 || strings.IndexByte(suffix, 0) >= 0 {
			return nil, fmt.Errorf("%w: name %q", ErrXattr, name)
		}
		if idx == 2 || idx == 3 {
			var err error
			if v, err = aclToDisk(v); err != nil {
				return nil, fmt.Errorf("%w: %s: %v", ErrXattr, name, err)
			}
		} else {
			v = slices.Clone(v)
		}
		xs = append(xs, xattr{index: idx, name: suffix, value: v})
	}
	slices.SortFunc(xs, func(a, b xattr) int {
		if a.index != b.index {
			return int(a.index) - int(b.index)
		}
		if len(a.name) != len(b.name) {
			return len(a.name) - len(b.name)
		}
		return strings.Compare(a.name, b.name)
	})
	return xs, nil
}

// aclToDisk converts a POSIX ACL from the VFS format (version 2, 8-byte
// entries) to ext4's (version 1, 4-byte entries for the tags without an id).
func aclToDisk(v []byte) ([]byte, error) {
	le := binary.LittleEndian
	if len(v) < 4 || (len(v)-4)%8 != 0 {
		return nil, fmt.Errorf("ACL length %d", len(v))
	}
	if le.Uint32(v) != 2 {
		return nil, fmt.Errorf("ACL version %d", le.Uint32(v))
	}
	out := make([]byte, 4, len(v))
	le.PutUint32(out, 1)
	for p := v[4:]; len(p) > 0; p = p[8:] {
		tag := le.Uint16(p)
		switch tag {
		case 0x01, 0x04, 0x10, 0x20: // USER_OBJ, GROUP_OBJ, MASK, OTHER
			out = append(out, p[:4]...)
		case 0x02, 0x08: // USER, GROUP
			out = append(out, p[:8]...)
		default:
			return nil, fmt.Errorf("ACL tag %#x", tag)
		}
	}
	return out, nil
}

// splitXattrs decides which attributes live in the inode: it returns the
// index of the first attribute that goes to the external block (len(xs)
// when none), filling the in-inode area in order.
func splitXattrs(xs []xattr) (int, error) {
	used := 4 + 4 // magic + terminator
	i := 0
	for ; i < len(xs); i++ {
		need := disk.XattrEntrySize(len(xs[i].name)) + disk.XattrValueSize(len(xs[i].value))
		if used+need > disk.InodeXattrSpace {
			break
		}
		used += need
	}
	used = disk.XattrHeaderSize + 4
	for _, x := range xs[i:] {
		used += disk.XattrEntrySize(len(x.name)) + disk.XattrValueSize(len(x.value))
	}
	if i < len(xs) && used > blockSize {
		return 0, fmt.Errorf("%w: %d bytes do not fit in one block", ErrXattr, used)
	}
	return i, nil
}

// putXattrs lays out xs as entries from off and values ending at end in
// b; value offsets are relative to base. It returns the entry hashes.
func putXattrs(b []byte, off, end, base int, xs []xattr) []uint32 {
	hashes := make([]uint32, 0, len(xs))
	for _, x := range xs {
		vo := 0
		if len(x.value) > 0 {
			end -= disk.XattrValueSize(len(x.value))
			copy(b[end:], x.value)
			vo = end - base
		}
		h := disk.XattrHash(x.name, x.value)
		disk.PutXattrEntry(b[off:], x.index, x.name, vo, len(x.value), h)
		hashes = append(hashes, h)
		off += disk.XattrEntrySize(len(x.name))
	}
	return hashes
}

// xattrKey returns a string that is equal for equal attribute lists.
func xattrKey(xs []xattr) string {
	var b strings.Builder
	for _, x := range xs {
		var n [4]byte
		binary.LittleEndian.PutUint32(n[:], uint32(len(x.value)))
		b.WriteByte(x.index)
		b.WriteByte(byte(len(x.name)))
		b.WriteString(x.name)
		b.Write(n[:])
		b.Write(x.value)
	}
	return b.String()
}
