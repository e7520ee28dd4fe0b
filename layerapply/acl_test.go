package layerapply

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"golang.org/x/sys/unix"
)

// refEntries decodes a VFS ACL without the code under test: nil when the bytes are not a
// version 2 header and whole 8-byte entries.
func refEntries(v []byte) [][3]uint32 {
	if len(v) < 4 || (len(v)-4)%8 != 0 || binary.LittleEndian.Uint32(v) != 2 {
		return nil
	}
	var es [][3]uint32
	for i := 4; i < len(v); i += 8 {
		es = append(es, [3]uint32{uint32(binary.LittleEndian.Uint16(v[i:])), uint32(binary.LittleEndian.Uint16(v[i+2:])), binary.LittleEndian.Uint32(v[i+4:])})
	}
	return es
}

// refSorted orders entries by tag, then named entries by id.
func refSorted(es [][3]uint32) [][3]uint32 {
	out := append([][3]uint32(nil), es...)
	key := func(e [3]uint32) uint64 {
		if e[0] == 2 || e[0] == 8 {
			return uint64(e[0])<<32 | uint64(e[2])
		}
		return uint64(e[0]) << 32
	}
	sort.SliceStable(out, func(i, j int) bool { return key(out[i]) < key(out[j]) })
	return out
}

// refKernelValid is posix_acl_valid of Linux's fs/posix_acl.c, transcribed: a state
// machine over the entries in their given order.
func refKernelValid(es [][3]uint32) bool {
	const (
		sUserObj = iota
		sUser
		sGroup
		sOther
		sDone
	)
	state, needsMask := sUserObj, false
	for _, e := range es {
		if e[1]&^7 != 0 {
			return false
		}
		switch e[0] {
		case 0x01:
			if state != sUserObj {
				return false
			}
			state = sUser
		case 0x02:
			if state != sUser || e[2] == 0xffffffff {
				return false
			}
			needsMask = true
		case 0x04:
			if state != sUser {
				return false
			}
			state = sGroup
		case 0x08:
			if state != sGroup || e[2] == 0xffffffff {
				return false
			}
			needsMask = true
		case 0x10:
			if state != sGroup {
				return false
			}
			state = sOther
		case 0x20:
			if state == sOther || state == sGroup && !needsMask {
				state = sDone
				break
			}
			return false
		default:
			return false
		}
	}
	return state == sDone
}

// refDuplicate reports a named user or group given twice, which libacl's acl_valid
// refuses and the kernel's check does not look for.
func refDuplicate(es [][3]uint32) bool {
	seen := map[[2]uint32]bool{}
	for _, e := range es {
		if e[0] == 2 || e[0] == 8 {
			if seen[[2]uint32{e[0], e[2]}] {
				return true
			}
			seen[[2]uint32{e[0], e[2]}] = true
		}
	}
	return false
}

func refEncode(es [][3]uint32) []byte {
	b := []byte{2, 0, 0, 0}
	for _, e := range es {
		b = binary.LittleEndian.AppendUint16(b, uint16(e[0]))
		b = binary.LittleEndian.AppendUint16(b, uint16(e[1]))
		b = binary.LittleEndian.AppendUint32(b, e[2])
	}
	return b
}

// randomACL makes ACLs that are often nearly valid: the usual tags in shuffled order,
// sometimes one missing, doubled or unknown, small ids, now and then a bad permission.
func randomACL(r *rand.Rand) [][3]uint32 {
	var es [][3]uint32
	add := func(tag uint32) {
		id := uint32(0xffffffff)
		if tag == 2 || tag == 8 {
			id = r.Uint32N(4)
			if r.IntN(20) == 0 {
				id = 0xffffffff
			}
		}
		perm := r.Uint32N(8)
		if r.IntN(30) == 0 {
			perm = 8
		}
		es = append(es, [3]uint32{tag, perm, id})
	}
	for _, tag := range []uint32{1, 4, 0x20} {
		if r.IntN(15) != 0 {
			add(tag)
		}
	}
	for range r.IntN(4) {
		add([]uint32{1, 2, 2, 4, 8, 8, 0x10, 0x10, 0x20, 0x40}[r.IntN(10)])
	}
	if r.IntN(2) == 0 {
		add(0x10)
	}
	if len(es) == 0 {
		add(1)
	}
	if r.IntN(3) != 0 {
		r.Shuffle(len(es), func(i, j int) { es[i], es[j] = es[j], es[i] })
	}
	return es
}

// checkACLOracle compares canonicalACL on v with the reference: valid exactly when the
// entries, sorted, pass the kernel's check and name no one twice; the result is that sorted
// list, and "sorted" says whether it differs from the input.
func checkACLOracle(t *testing.T, v []byte) {
	t.Helper()
	es := refEntries(v)
	want := len(es) > 0 && refKernelValid(refSorted(es)) && !refDuplicate(es)
	out, sorted, err := canonicalACL(string(v))
	if (err == nil) != want {
		t.Fatalf("canonicalACL(%x) err = %v, reference says valid = %v", v, err, want)
	}
	if err != nil {
		return
	}
	if exp := string(refEncode(refSorted(es))); out != exp {
		t.Fatalf("canonicalACL(%x) = %x, want %x", v, out, exp)
	}
	if sorted != (out != string(v)) {
		t.Fatalf("canonicalACL(%x) sorted = %v, output differs = %v", v, sorted, out != string(v))
	}
}

func TestACLAgainstReference(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 13))
	valid := 0
	for range 20000 {
		v := refEncode(randomACL(r))
		checkACLOracle(t, v)
		if _, _, err := canonicalACL(string(v)); err == nil {
			valid++
		}
	}
	if valid < 1000 {
		t.Errorf("only %d of 20000 random ACLs valid: the generator does not reach the valid side", valid)
	}
}

// TestACLAgainstKernel asks the kernel: setxattr(system.posix_acl_access) of the sorted
// entries succeeds exactly when canonicalACL accepts them, but for the duplicate names the
// kernel does not look for.
func TestACLAgainstKernel(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("setting ACLs on files owned by another uid needs root")
	}
	f := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	probe := refEncode([][3]uint32{{1, 6, 0xffffffff}, {2, 4, 5}, {4, 4, 0xffffffff}, {0x10, 4, 0xffffffff}, {0x20, 4, 0xffffffff}})
	if err := unix.Setxattr(f, aclAccess, probe, 0); err != nil {
		t.Skipf("the temporary directory's filesystem takes no ACLs: %v", err)
	}
	r := rand.New(rand.NewPCG(7, 7))
	agree, valid := 0, 0
	for range 3000 {
		es := randomACL(r)
		v := refEncode(refSorted(es))
		kerr := unix.Setxattr(f, aclAccess, v, 0)
		if kerr != nil && !errors.Is(kerr, unix.EINVAL) {
			t.Fatalf("setxattr %x: %v", v, kerr)
		}
		_, _, err := canonicalACL(string(refEncode(es)))
		switch {
		case (err == nil) == (kerr == nil):
			agree++
		case kerr == nil && refDuplicate(es):
			// the kernel takes a repeated name; libacl and we do not
		default:
			t.Fatalf("ACL %x: kernel says %v, canonicalACL says %v", v, kerr, err)
		}
		if err == nil {
			valid++
		}
	}
	if valid < 100 {
		t.Errorf("only %d valid ACLs among the cases", valid)
	}
	t.Logf("%d of 3000 random ACLs decided as the kernel does, %d valid", agree, valid)
}

// FuzzACL compares canonicalACL with the reference on any bytes.
func FuzzACL(f *testing.F) {
	r := rand.New(rand.NewPCG(1, 1))
	for range 64 {
		f.Add(refEncode(randomACL(r)))
	}
	f.Add([]byte{2, 0, 0, 0})
	f.Add([]byte{1, 0, 0, 0, 1, 0, 7, 0, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, v []byte) {
		checkACLOracle(t, v)
	})
}

// FuzzTextACL: any text either fails or gives a VFS ACL that the reference decodes, with
// only known tags and permissions within rwx.
func FuzzTextACL(f *testing.F) {
	for _, s := range []string{
		"user::rwx\nuser:1000:r-x\ngroup::r-x\nmask::r-x\nother::r-x\n",
		"u::rw-,u:1000:r--,g::r--,g:50:rw-,m::rw-,o::---",
		"user::rw-\nuser:joe:rwx:1001\t#effective:r--\ngroup::r--\nmask::r--\nother::r--",
		"default:user::rwx,default:other::---", "", ",,,", "user:::", "mask:r-x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := textACL(s, nil)
		if err != nil {
			return
		}
		es := refEntries([]byte(v))
		if len(es) == 0 {
			t.Fatalf("textACL(%q) = %x: not a VFS ACL", s, v)
		}
		for _, e := range es {
			switch e[0] {
			case 1, 4, 0x10, 0x20:
				if e[2] != 0xffffffff {
					t.Fatalf("textACL(%q): unnamed entry with id %d", s, e[2])
				}
			case 2, 8:
			default:
				t.Fatalf("textACL(%q): tag %#x", s, e[0])
			}
			if e[1]&^7 != 0 {
				t.Fatalf("textACL(%q): permissions %#o", s, e[1])
			}
		}
		if back, err := aclText(v); err != nil {
			t.Fatalf("aclText(textACL(%q)): %v", s, err)
		} else if again, err := textACL(back, nil); err != nil || again != v {
			t.Fatalf("text %q -> %x -> %q -> %x, %v", s, v, back, again, err)
		}
	})
}
