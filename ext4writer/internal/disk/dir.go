package disk

// DirRecLen returns the minimal record length of an entry with a name of
// n bytes.
func DirRecLen(n int) int { return (8 + n + 3) &^ 3 }

// DirTailSize is the size of the metadata_csum directory leaf tail.
const DirTailSize = 12

// PutDirent writes a directory entry header and name at b.
func PutDirent(b []byte, ino uint32, recLen int, name string, ft uint8) {
	le.PutUint32(b[0:], ino)
	le.PutUint16(b[4:], uint16(recLen))
	b[6] = uint8(len(name))
	b[7] = ft
	copy(b[8:], name)
}

// SealDirLeaf writes the checksum tail of a leaf directory block.
func SealDirLeaf(b []byte, inodeSeed uint32) {
	t := b[BlockSize-DirTailSize:]
	le.PutUint32(t[0:], 0)
	le.PutUint16(t[4:], DirTailSize)
	t[6] = 0
	t[7] = 0xDE
	le.PutUint32(t[8:], Crc32c(inodeSeed, b[:BlockSize-DirTailSize]))
}

// SealDxNode writes the dx_tail checksum of an htree node whose
// count/limit header is at countOff.
func SealDxNode(b []byte, countOff int, inodeSeed uint32) {
	limit := int(le.Uint16(b[countOff:]))
	count := int(le.Uint16(b[countOff+2:]))
	tail := countOff + limit*8
	le.PutUint32(b[tail:], 0)
	le.PutUint32(b[tail+4:], 0)
	c := Crc32c(inodeSeed, b[:countOff+count*8])
	c = Crc32c(c, b[tail:tail+8])
	le.PutUint32(b[tail+4:], c)
}

// HalfMD4 computes the ext4 half_md4 directory hash of name with the
// given seed, using the unsigned-char variant when unsigned is set. It
// returns the major hash with the low bit cleared, as stored in htree
// indexes.
func HalfMD4(name []byte, seed [4]uint32, unsigned bool) uint32 {
	buf := [4]uint32{0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476}
	if seed != [4]uint32{} {
		buf = seed
	}
	var in [8]uint32
	p := name
	for l := len(name); l > 0; l -= 32 {
		str2hashbuf(p, l, in[:], unsigned)
		halfMD4Transform(&buf, &in)
		if len(p) > 32 {
			p = p[32:]
		}
	}
	h := buf[1] &^ 1
	if h == 0x7fffffff<<1 {
		h = (0x7fffffff - 1) << 1
	}
	return h
}

func str2hashbuf(msg []byte, l int, buf []uint32, unsigned bool) {
	pad := uint32(l) | uint32(l)<<8
	pad |= pad << 16
	val := pad
	num := len(buf)
	if l > num*4 {
		l = num * 4
	}
	j := 0
	for i := 0; i < l; i++ {
		var c uint32
		if unsigned {
			c = uint32(msg[i])
		} else {
			c = uint32(int32(int8(msg[i])))
		}
		val = c + val<<8
		if i%4 == 3 {
			buf[j] = val
			j++
			val = pad
			num--
		}
	}
	num--
	if num >= 0 {
		buf[j] = val
		j++
	}
	for num--; num >= 0; num-- {
		buf[j] = pad
		j++
	}
}

func rol(x uint32, s uint) uint32 { return x<<s | x>>(32-s) }

func halfMD4Transform(buf *[4]uint32, in *[8]uint32) {
	f := func(x, y, z uint32) uint32 { return z ^ (x & (y ^ z)) }
	g := func(x, y, z uint32) uint32 { return (x & y) + ((x ^ y) & z) }
	h := func(x, y, z uint32) uint32 { return x ^ y ^ z }
	const k2, k3 = 013240474631, 015666365641
	a, b, c, d := buf[0], buf[1], buf[2], buf[3]

	a = rol(a+f(b, c, d)+in[0], 3)
	d = rol(d+f(a, b, c)+in[1], 7)
	c = rol(c+f(d, a, b)+in[2], 11)
	b = rol(b+f(c, d, a)+in[3], 19)
	a = rol(a+f(b, c, d)+in[4], 3)
	d = rol(d+f(a, b, c)+in[5], 7)
	c = rol(c+f(d, a, b)+in[6], 11)
	b = rol(b+f(c, d, a)+in[7], 19)

	a = rol(a+g(b, c, d)+in[1]+k2, 3)
	d = rol(d+g(a, b, c)+in[3]+k2, 5)
	c = rol(c+g(d, a, b)+in[5]+k2, 9)
	b = rol(b+g(c, d, a)+in[7]+k2, 13)
	a = rol(a+g(b, c, d)+in[0]+k2, 3)
	d = rol(d+g(a, b, c)+in[2]+k2, 5)
	c = rol(c+g(d, a, b)+in[4]+k2, 9)
	b = rol(b+g(c, d, a)+in[6]+k2, 13)

	a = rol(a+h(b, c, d)+in[3]+k3, 3)
	d = rol(d+h(a, b, c)+in[7]+k3, 9)
	c = rol(c+h(d, a, b)+in[2]+k3, 11)
	b = rol(b+h(c, d, a)+in[6]+k3, 15)
	a = rol(a+h(b, c, d)+in[1]+k3, 3)
	d = rol(d+h(a, b, c)+in[5]+k3, 9)
	c = rol(c+h(d, a, b)+in[0]+k3, 11)
	b = rol(b+h(c, d, a)+in[4]+k3, 15)

	buf[0] += a
	buf[1] += b
	buf[2] += c
	buf[3] += d
}
