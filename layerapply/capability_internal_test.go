package layerapply

import (
	"encoding/binary"
	"testing"
)

// kernelCap is what Linux reads from a security.capability value, written from
// include/uapi/linux/capability.h (struct vfs_cap_data, vfs_ns_cap_data) and
// get_vfs_caps_from_disk in security/commoncap.c: the revision in the top byte of the
// little-endian magic_etc with a size fixed per revision (v1 12 bytes with 32-bit sets,
// v2 20 and v3 24 with 64-bit sets), the effective flag in bit 0, and for v3 the root
// uid of the user namespace that owns it (v1 and v2 belong to the initial one, uid 0).
// Other bits of magic_etc are ignored. ok is false for a value the kernel refuses.
type kernelCap struct {
	ok                     bool
	effective              bool
	permitted, inheritable uint64
	rootid                 uint32
}

func readKernelCap(v []byte) kernelCap {
	if len(v) < 4 {
		return kernelCap{}
	}
	magic := binary.LittleEndian.Uint32(v)
	sizes := map[uint32]int{1: 12, 2: 20, 3: 24}
	rev := magic >> 24
	if sizes[rev] == 0 || len(v) != sizes[rev] {
		return kernelCap{}
	}
	c := kernelCap{ok: true, effective: magic&1 != 0}
	c.permitted = uint64(binary.LittleEndian.Uint32(v[4:]))
	c.inheritable = uint64(binary.LittleEndian.Uint32(v[8:]))
	if rev >= 2 {
		c.permitted |= uint64(binary.LittleEndian.Uint32(v[12:])) << 32
		c.inheritable |= uint64(binary.LittleEndian.Uint32(v[16:])) << 32
	}
	if rev == 3 {
		c.rootid = binary.LittleEndian.Uint32(v[20:])
	}
	return c
}

// FuzzCapability checks capabilityRule against the kernel's reading of the value: a
// value the kernel refuses, or a v3 one owned by another namespace root than uid 0
// (which would grant its capabilities to real root once written where the initial
// namespace reads it), is dropped with a note; anything else is kept as a value the
// kernel reads as the same effective flag and sets, owned by the initial namespace's
// root, and in a revision the initial namespace writes (v1 or v2).
func FuzzCapability(f *testing.F) {
	for _, v := range []string{
		capBlob(1, 12, 0), capBlob(2, 20, 0), capBlob(3, 24, 0), capBlob(3, 24, 1000), capBlob(2, 24, 0),
		capBlob(3, 20, 0), capBlob(4, 24, 0), "", "\x00\x00\x00", "\x01\x00\x00\x03" + string(make([]byte, 20)),
		"\xff\xff\xff\x03\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x00\x00\x00\x00",
	} {
		f.Add([]byte(v))
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		in := readKernelCap(v)
		got, n := capabilityRule(string(v))
		if !in.ok || in.rootid != 0 {
			if got != "" || n == nil || n.action != ActionDropped || n.attr != "security.capability" {
				t.Fatalf("%x (kernel reads %+v): kept %x, note %+v; want it dropped with a note", v, in, got, n)
			}
			return
		}
		if n != nil {
			t.Fatalf("%x (kernel reads %+v): note %+v for a value kept", v, in, n)
		}
		out := readKernelCap([]byte(got))
		if out != in {
			t.Fatalf("%x: kept %x, which the kernel reads as %+v, not %+v", v, got, out, in)
		}
		if rev := got[3]; rev != 1 && rev != 2 {
			t.Fatalf("%x: kept %x, revision %d", v, got, rev)
		}
	})
}
