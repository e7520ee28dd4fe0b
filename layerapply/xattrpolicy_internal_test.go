package layerapply

import (
	"archive/tar"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/img2ext4/img2ext4/internal/tartest"
)

const u = aclUndefinedID

var (
	aclPlain    = tartest.ACL(1, 6, u, 4, 4, u, 0x20, 4, u)
	aclNamed    = tartest.ACL(1, 7, u, 2, 5, 1000, 2, 7, 1001, 4, 5, u, 8, 6, 50, 0x10, 7, u, 0x20, 5, u)
	aclUnsorted = tartest.ACL(1, 7, u, 4, 5, u, 0x20, 0, u, 0x10, 7, u, 2, 5, 1001, 2, 7, 1000)
	aclSorted   = tartest.ACL(1, 7, u, 2, 7, 1000, 2, 5, 1001, 4, 5, u, 0x10, 7, u, 0x20, 0, u)
)

func capBlob(rev byte, n int, rootid uint32) string {
	b := make([]byte, n)
	binary.LittleEndian.PutUint32(b, uint32(rev)<<24|1)
	binary.LittleEndian.PutUint32(b[4:], 1<<13) // CAP_NET_RAW permitted
	if n == 24 {
		binary.LittleEndian.PutUint32(b[20:], rootid)
	}
	return string(b)
}

func TestXattrRule(t *testing.T) {
	v2 := capBlob(2, 20, 0)
	cases := []struct {
		name       string
		typ        byte
		attr, val  string
		want       string // value kept; "" with action dropped
		action     Action // "" when kept unchanged
		reasonPart string
	}{
		{"cap v2 kept", tar.TypeReg, "security.capability", v2, v2, "", ""},
		{"cap v1 kept", tar.TypeReg, "security.capability", capBlob(1, 12, 0), capBlob(1, 12, 0), "", ""},
		{"cap v3 root 0 to v2", tar.TypeReg, "security.capability", capBlob(3, 24, 0), v2, "", ""},
		{"cap v3 root 1000 dropped", tar.TypeReg, "security.capability", capBlob(3, 24, 1000), "", ActionDropped, "uid 1000"},
		{"cap garbage dropped", tar.TypeReg, "security.capability", "\xde\xad\xbe\xef\x00\x01\x02\x03", "", ActionDropped, "revision 0xef"},
		{"cap v2 wrong length dropped", tar.TypeReg, "security.capability", capBlob(2, 24, 0), "", ActionDropped, "24 bytes, want 20"},
		{"cap short dropped", tar.TypeReg, "security.capability", "\x00\x00", "", ActionDropped, "malformed"},
		{"acl plain kept", tar.TypeReg, aclAccess, aclPlain, aclPlain, "", ""},
		{"acl named kept", tar.TypeReg, aclAccess, aclNamed, aclNamed, "", ""},
		{"acl unsorted sorted", tar.TypeReg, aclAccess, aclUnsorted, aclSorted, ActionChanged, "canonical order"},
		{"acl named without mask", tar.TypeReg, aclAccess, tartest.ACL(1, 7, u, 2, 7, 1000, 4, 5, u, 0x20, 5, u), "", ActionDropped, "no mask"},
		{"acl two owners", tar.TypeReg, aclAccess, tartest.ACL(1, 7, u, 1, 7, u, 4, 5, u, 0x20, 5, u), "", ActionDropped, "2 user::"},
		{"acl no other", tar.TypeReg, aclAccess, tartest.ACL(1, 7, u, 4, 5, u), "", ActionDropped, "0 other::"},
		{"acl two masks", tar.TypeReg, aclAccess, tartest.ACL(1, 7, u, 4, 5, u, 0x10, 7, u, 0x10, 7, u, 0x20, 5, u), "", ActionDropped, "2 mask"},
		{"acl duplicate user", tar.TypeReg, aclAccess, tartest.ACL(1, 7, u, 2, 7, 5, 2, 1, 5, 4, 5, u, 0x10, 7, u, 0x20, 5, u), "", ActionDropped, "user 5 twice"},
		{"acl undefined id", tar.TypeReg, aclAccess, tartest.ACL(1, 7, u, 8, 7, u, 4, 5, u, 0x10, 7, u, 0x20, 5, u), "", ActionDropped, "undefined id"},
		{"acl unknown tag", tar.TypeReg, aclAccess, tartest.ACL(1, 7, u, 0x40, 7, 1, 4, 5, u, 0x20, 5, u), "", ActionDropped, "tag 0x40"},
		{"acl perm beyond rwx", tar.TypeReg, aclAccess, tartest.ACL(1, 15, u, 4, 5, u, 0x20, 5, u), "", ActionDropped, "beyond rwx"},
		{"acl bad length", tar.TypeReg, aclAccess, aclPlain + "x", "", ActionDropped, "8-byte entries"},
		{"acl version 1", tar.TypeReg, aclAccess, "\x01" + aclPlain[1:], "", ActionDropped, "version 1"},
		{"acl empty", tar.TypeReg, aclAccess, "\x02\x00\x00\x00", "", ActionDropped, "no entries"},
		{"acl on symlink", tar.TypeSymlink, aclAccess, aclPlain, "", ActionDropped, "symbolic links"},
		{"default acl on file", tar.TypeReg, aclDefault, aclPlain, "", ActionDropped, "only directories"},
		{"default acl on dir", tar.TypeDir, aclDefault, aclNamed, aclNamed, "", ""},
		{"access acl on device", tar.TypeChar, aclAccess, aclPlain, aclPlain, "", ""},
		{"nfs4 acl", tar.TypeReg, "system.nfs4_acl", "x", "", ActionDropped, `"system."`},
		{"btrfs", tar.TypeReg, "btrfs.compression", "zstd", "", ActionDropped, `"btrfs."`},
		{"no namespace", tar.TypeReg, "plain", "v", "", ActionDropped, `"plain"`},
		{"bare user.", tar.TypeReg, "user.", "v", "", ActionDropped, "no suffix"},
		{"bare security.", tar.TypeDir, "security.", "v", "", ActionDropped, "no suffix"},
		{"user on symlink", tar.TypeSymlink, "user.x", "v", "", ActionDropped, "only on regular files"},
		{"user on fifo", tar.TypeFifo, "user.x", "v", "", ActionDropped, "only on regular files"},
		{"trusted on symlink kept", tar.TypeSymlink, "trusted.overlay.x", "v", "v", "", ""},
		{"selinux kept", tar.TypeReg, "security.selinux", "system_u:object_r:bin_t:s0\x00", "system_u:object_r:bin_t:s0\x00", "", ""},
		{"name 255 kept", tar.TypeReg, "user." + strings.Repeat("n", 250), "v", "v", "", ""},
		{"name 256 dropped", tar.TypeReg, "user." + strings.Repeat("n", 251), "v", "", ActionDropped, "256 bytes"},
		{"value fills a block", tar.TypeReg, "user.big", strings.Repeat("v", 4060-20), strings.Repeat("v", 4060-20), "", ""},
		{"value over a block", tar.TypeReg, "user.big", strings.Repeat("v", 4060-19), "", ActionDropped, "one 4096-byte block"},
		{"value 64 KiB", tar.TypeReg, "user.big", strings.Repeat("v", 64<<10), "", ActionDropped, "65536 bytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			keep, notes := xattrPolicy(tc.typ, []kv{{tc.attr, tc.val}})
			got := ""
			if len(keep) == 1 {
				got = keep[0].value
			}
			if got != tc.want || len(keep) > 1 {
				t.Errorf("kept %q, want %q", keep, tc.want)
			}
			if tc.action == "" {
				if len(notes) != 0 {
					t.Errorf("notes %v, want none", notes)
				}
				return
			}
			if len(notes) != 1 || notes[0].action != tc.action || notes[0].attr != tc.attr || !strings.Contains(notes[0].reason, tc.reasonPart) {
				t.Errorf("notes %+v, want one %s of %s saying %q", notes, tc.action, tc.attr, tc.reasonPart)
			}
		})
	}
}

func TestXattrPolicyBlock(t *testing.T) {
	// Three 1,500-byte values do not fit one block together; the largest goes (ties by
	// name: the last), whatever the input order.
	a, b, c := strings.Repeat("a", 1500), strings.Repeat("b", 1500), strings.Repeat("c", 1600)
	for _, in := range [][]kv{{{"user.a", a}, {"user.b", b}, {"user.c", c}}, {{"user.c", c}, {"user.b", b}, {"user.a", a}}} {
		keep, notes := xattrPolicy(tar.TypeReg, in)
		if len(keep) != 2 || keep[0].name != "user.a" || keep[1].name != "user.b" {
			t.Errorf("kept %d: %v", len(keep), names(keep))
		}
		if len(notes) != 1 || notes[0].attr != "user.c" || notes[0].action != ActionDropped {
			t.Errorf("notes %+v", notes)
		}
	}
	// Names come out sorted, the first of a repeated name winning.
	keep, _ := xattrPolicy(tar.TypeReg, []kv{{"user.z", "1"}, {"trusted.a", "2"}, {"user.z", "3"}})
	if len(keep) != 2 || keep[0] != (kv{"trusted.a", "2"}) || keep[1] != (kv{"user.z", "1"}) {
		t.Errorf("kept %v", keep)
	}
}

func names(xs []kv) []string {
	var out []string
	for _, x := range xs {
		out = append(out, x.name)
	}
	return out
}

func TestTextACL(t *testing.T) {
	cases := []struct {
		name, text, want, err string
	}{
		{"gnu tar newlines", "user::rwx\nuser:1000:r-x\ngroup::r-x\nmask::r-x\nother::r-x\n",
			tartest.ACL(1, 7, u, 2, 5, 1000, 4, 5, u, 0x10, 5, u, 0x20, 5, u), ""},
		{"commas and abbreviations", "u::rw-,u:1000:r--,g::r--,g:50:rw-,m::rw-,o::---",
			tartest.ACL(1, 6, u, 2, 4, 1000, 4, 4, u, 8, 6, 50, 0x10, 6, u, 0x20, 0, u), ""},
		{"getfacl comments and spaces", "user::rw-\nuser:1000:rwx\t#effective:r--\n group::r--\nmask::r--\nother::r--",
			tartest.ACL(1, 6, u, 2, 7, 1000, 4, 4, u, 0x10, 4, u, 0x20, 4, u), ""},
		{"mask and other without qualifier", "user::rwx,group::r-x,mask:r-x,other:r-x",
			tartest.ACL(1, 7, u, 4, 5, u, 0x10, 5, u, 0x20, 5, u), ""},
		{"star numeric id", "user::rwx,user:joe:rw-:1001,group::r-x,group:staff:r--:50,mask::rwx,other::---",
			tartest.ACL(1, 7, u, 2, 6, 1001, 4, 5, u, 8, 4, 50, 0x10, 7, u, 0x20, 0, u), ""},
		{"default prefix", "default:user::rwx,default:group::r-x,default:other::---",
			tartest.ACL(1, 7, u, 4, 5, u, 0x20, 0, u), ""},
		{"kept out of order", "other::r--,user::rw-,group::r--", tartest.ACL(0x20, 4, u, 1, 6, u, 4, 4, u), ""},
		{"names from the image", "user::rw-\nuser:cloudsdk:r-x\ngroup::r--\ngroup:staff:rw-\nmask::rwx\nother::r--\n",
			tartest.ACL(1, 6, u, 2, 5, 1000, 4, 4, u, 8, 6, 50, 0x10, 7, u, 0x20, 4, u), ""},
		{"user name is no group name", "user::rw-,group:cloudsdk:r-x,group::r--,mask::r-x,other::r--", "", `names group "cloudsdk", which the image's /etc/group`},
		{"unknown name", "user::rw-\nuser:nobody-here:r-x\ngroup::r--\nmask::r-x\nother::r--\n", "", `names user "nobody-here", which the image's /etc/passwd does not list`},
		{"bad tag", "user::rwx,world::r--", "", `unknown tag "world"`},
		{"bad perm", "user::rwz,group::r--,other::r--", "", `'z'`},
		{"repeated perm", "user::rr-,group::r--,other::r--", "", "twice"},
		{"qualifier on other", "user::rwx,group::r-x,other:5:r-x", "", "takes no qualifier"},
		{"empty", " \n", "", "no entries"},
		{"too many fields", "user:1:2:3:4", "", "not tag:qualifier"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := textACL(tc.text, func(group bool, name string) (uint32, bool) {
				ids := map[bool]map[string]uint32{false: {"cloudsdk": 1000}, true: {"staff": 50}}
				id, ok := ids[group][name]
				return id, ok
			})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one saying %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %x, %v; want %x", got, err, tc.want)
			}
		})
	}
}

func TestEntryRule(t *testing.T) {
	long := strings.Repeat("d/", 2048) // 4096 bytes
	cases := []struct {
		name            string
		typ             byte
		path, link, err string
	}{
		{"plain", tar.TypeReg, "a/b", "", ""},
		{"path 4095", tar.TypeReg, long[:4094] + "f", "", ""},
		{"path 4096", tar.TypeReg, long[:4095] + "f", "", "4096 bytes"},
		{"element 255", tar.TypeDir, "a/" + strings.Repeat("e", 255), "", ""},
		{"element 256", tar.TypeDir, "a/" + strings.Repeat("e", 256) + "/b", "", "256 bytes"},
		{"symlink target 4095", tar.TypeSymlink, "l", strings.Repeat("t", 4095), ""},
		{"symlink target 4096", tar.TypeSymlink, "l", strings.Repeat("t", 4096), "target is 4096 bytes"},
		{"symlink target long element", tar.TypeSymlink, "l", strings.Repeat("t", 300), ""},
		{"hard link target long element", tar.TypeLink, "l", strings.Repeat("t", 300), "hard link target"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := entryRule(tc.typ, tc.path, tc.link)
			if tc.err == "" && got != "" || tc.err != "" && !strings.Contains(got, tc.err) {
				t.Errorf("entryRule = %q, want %q", got, tc.err)
			}
		})
	}
}

// FuzzXattrPolicy: whatever an entry carries, what the policy keeps is something ext4 holds
// and the kernel reads as meant, and everything it does not keep unchanged is reported.
func FuzzXattrPolicy(f *testing.F) {
	f.Add(byte(tar.TypeReg), "security.capability", capBlob(3, 24, 1000), "user.a", "1")
	f.Add(byte(tar.TypeDir), aclDefault, aclUnsorted, aclAccess, aclNamed)
	f.Add(byte(tar.TypeSymlink), "user.x", "v", "trusted.y", strings.Repeat("z", 5000))
	f.Add(byte(tar.TypeFifo), "system.nfs4_acl", "", "security.", "x")
	f.Fuzz(func(t *testing.T, typ byte, n1, v1, n2, v2 string) {
		in := []kv{{n1, v1}, {n2, v2}}
		keep, notes := xattrPolicy(typ, in)
		noted := map[string]Action{}
		for _, n := range notes {
			noted[n.attr] = n.action
		}
		for i, x := range keep {
			if i > 0 && keep[i-1].name >= x.name {
				t.Fatalf("kept names not sorted and unique: %q", names(keep))
			}
			ns, suffix, ok := strings.Cut(x.name, ".")
			switch {
			case x.name == aclAccess || x.name == aclDefault:
				es, err := decodeACL(x.value)
				if err != nil || validACL(es) != nil {
					t.Fatalf("kept invalid ACL %x", x.value)
				}
				if typ == tar.TypeSymlink || x.name == aclDefault && typ != tar.TypeDir {
					t.Fatalf("kept %s on type %q", x.name, typ)
				}
			case !ok || suffix == "" || ns != "user" && ns != "trusted" && ns != "security":
				t.Fatalf("kept %q, which ext4 has no index for", x.name)
			case ns == "user" && typ != tar.TypeReg && typ != tar.TypeDir:
				t.Fatalf("kept %q on type %q", x.name, typ)
			}
			if len(x.name) > 255 || strings.IndexByte(x.name, 0) >= 0 {
				t.Fatalf("kept name %q", x.name)
			}
			if x.name == "security.capability" && len(x.value) != 12 && len(x.value) != 20 {
				t.Fatalf("kept a %d-byte capability", len(x.value))
			}
			changed := true
			for _, y := range in {
				if y == x {
					changed = false
				}
			}
			if changed && noted[x.name] != ActionChanged && x.name != "security.capability" {
				t.Fatalf("%s changed without a note", x.name)
			}
		}
		if xattrSpace(keep) > xattrBlockSpace {
			t.Fatalf("kept %d bytes", xattrSpace(keep))
		}
		for _, x := range in {
			kept := false
			for _, y := range keep {
				kept = kept || y.name == x.name
			}
			if !kept && noted[x.name] != ActionDropped {
				t.Fatalf("%q gone without a note (notes %+v)", x.name, notes)
			}
		}
	})
}
