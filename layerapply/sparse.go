package layerapply

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Segment is one run of data in a sparse regular file: Length bytes at Offset. Outside
// its segments a sparse file reads as zeros (holes) that take no space.
type Segment struct {
	Offset, Length int64
}

// End returns the offset just past the segment.
func (s Segment) End() int64 { return s.Offset + s.Length }

// MaxSparseSegments is the most data segments a sparse tar entry may list: archive/tar's
// own cap. A map listing more is refused.
const MaxSparseSegments = 1 << 20

// Sparse tar entries.
//
// GNU tar stores a sparse file as its data segments one after another, with a map of where
// they go: in the PAX records (formats 0.0 and 0.1), at the start of the entry's data
// (format 1.0), or in the header block and extension blocks that follow it (the old GNU
// format, type 'S'). archive/tar reads all four, checks the map and hands out the file
// with its holes filled with zeros, which for a 1 TiB file means clearing a TiB of memory;
// it does not export the map. So Apply reads the map itself and takes the segments straight
// from the stream:
//
//   - A tarSource sits under the tar.Reader. It records the bytes tar.Reader.Next reads,
//     which are the entry's headers and, for formats 1.0 and 'S', the blocks of the map.
//   - When Next returns a sparse entry, sparseMap finds the entry's header block in that
//     record and parses the map of the entry's format with its own strict parser.
//   - A sparseBody gives the file to the sink: zeros for holes (as Read), or, through Seek,
//     the segments alone; it reads the segments from the tarSource, which then owes the
//     tar.Reader those bytes: when Next skips the rest of the entry it gets them back as
//     nothing, without reading the stream again.
//
// archive/tar has already accepted the entry and its map before any of this runs, so the
// map parsed here is one archive/tar validated too; the parsers here are stricter (every
// number a plain decimal, segments sorted and apart, the data exactly as long as the
// segments) and refuse with a message saying what is wrong. When archive/tar refuses a
// sparse entry itself ("invalid tar header"), sparseDiagnosis reads the same record to
// say why.
//
// This relies on what a tar.Reader does with its reader, not on its internals: it reads
// headers and data in order, buffers nothing, and skips what was not read of an entry by
// reading it (a tarSource is no io.Seeker). The tests that compare every GNU tar format
// with GNU tar's own extraction would see it change.

// maxHeaderRecord bounds the bytes a tarSource records during one tar.Reader.Next:
// archive/tar reads at most 1 MiB of each kind of header (PAX records, long name, long
// link, sparse map), but a layer may repeat headers without end, and only a sparse entry
// needs the record.
const maxHeaderRecord = 4<<20 + 4*512

// tarSource is the reader under a layer's tar.Reader (see "Sparse tar entries").
type tarSource struct {
	r        io.Reader
	rec      []byte // what Next read, while recording
	recOn    bool
	recBig   bool  // the record passed maxHeaderRecord
	recStart int64 // the stream offset of rec[0]
	read     int64 // bytes read from r
	owed     int64 // bytes a sparseBody took that the tar.Reader has not skipped yet
}

// reset starts reading a new layer from r.
func (s *tarSource) reset(r io.Reader) *tarSource {
	*s = tarSource{r: r, rec: s.rec[:0]}
	return s
}

// Read implements io.Reader for the tar.Reader: bytes a sparseBody took come back first,
// as nothing (the tar.Reader only skips them).
func (s *tarSource) Read(p []byte) (int, error) {
	if s.owed > 0 {
		n := int(min(int64(len(p)), s.owed))
		s.owed -= int64(n)
		return n, nil
	}
	n, err := s.r.Read(p)
	s.read += int64(n)
	if s.recOn && n > 0 {
		if len(s.rec)+n > maxHeaderRecord {
			s.recBig = true
		} else {
			s.rec = append(s.rec, p[:n]...)
		}
	}
	return n, err
}

// startRecord starts recording what Next reads. The previous entry's data must have been
// read to its end, so that the record starts with its padding.
func (s *tarSource) startRecord() {
	s.rec, s.recOn, s.recBig, s.recStart = s.rec[:0], true, false, s.read
}

// headers returns the record from the first header block on: headers start at multiples of
// 512 bytes in the stream.
func (s *tarSource) headers() []byte {
	pad := int(-s.recStart & 511)
	if pad > len(s.rec) {
		return nil
	}
	return s.rec[pad:]
}

// stopRecord stops recording.
func (s *tarSource) stopRecord() { s.recOn = false }

// take reads data of the current entry for a sparseBody.
func (s *tarSource) take(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.read += int64(n)
	s.owed += int64(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// isSparse reports whether archive/tar read hdr as a sparse file, by its own rules: type
// 'S', or GNU sparse PAX records of a version it knows.
func isSparse(hdr *tar.Header) bool {
	if hdr.Typeflag == tar.TypeGNUSparse {
		return true
	}
	major, minor := hdr.PAXRecords["GNU.sparse.major"], hdr.PAXRecords["GNU.sparse.minor"]
	switch {
	case major == "0" && (minor == "0" || minor == "1"), major == "1" && minor == "0":
		return true
	case major != "" || minor != "":
		return false
	}
	return hdr.PAXRecords["GNU.sparse.map"] != ""
}

// sparseMap returns the data segments of the sparse entry hdr that Next just returned, with
// rec the headers Next read (see tarSource.headers), and the number of bytes of data that
// follow in the stream.
func sparseMap(hdr *tar.Header, rec []byte) ([]Segment, int64, error) {
	main, tail, err := mainHeader(rec)
	if err != nil {
		return nil, 0, err
	}
	physical, ok := parseNumeric(main[124:136])
	if v := hdr.PAXRecords["size"]; v != "" {
		physical, err = strconv.ParseInt(v, 10, 64)
		ok = err == nil
	}
	if !ok || physical < 0 {
		return nil, 0, errors.New("sparse entry: invalid size field")
	}
	var segs []Segment
	switch {
	case hdr.Typeflag == tar.TypeGNUSparse:
		segs, err = parseOldGNUMap(main, tail)
	case hdr.PAXRecords["GNU.sparse.major"] == "1":
		var used int
		segs, used, err = parseSparse1x0(tail)
		if err == nil && used != len(tail) {
			err = fmt.Errorf("sparse map: %d bytes read, the map takes %d", len(tail), used)
		}
		physical -= int64(len(tail))
	default:
		if len(tail) != 0 {
			err = fmt.Errorf("sparse entry: %d bytes after the header", len(tail))
		} else {
			segs, err = parseSparse0x1(hdr.PAXRecords["GNU.sparse.numblocks"], hdr.PAXRecords["GNU.sparse.map"])
		}
	}
	if err != nil {
		return nil, 0, err
	}
	segs, err = checkSegments(segs, hdr.Size, physical)
	return segs, physical, err
}

// mainHeader finds, in the headers tar.Reader.Next read for one entry, the entry's own
// header block and what was read after it. rec holds the blocks of any PAX ('x'), long
// name ('L') and long link ('K') headers with their data, then the entry's header.
func mainHeader(rec []byte) (main, tail []byte, err error) {
	b := rec
	for len(b) >= 512 {
		h := b[:512]
		switch h[156] {
		case tar.TypeXHeader, tar.TypeGNULongName, tar.TypeGNULongLink:
			n, ok := parseNumeric(h[124:136])
			if !ok || n < 0 || n > int64(len(b)) {
				return nil, nil, errors.New("sparse entry: cannot find its header block")
			}
			b = b[512+(n+511)&^511:]
			continue
		}
		return h, b[512:], nil
	}
	return nil, nil, errors.New("sparse entry: cannot find its header block")
}

// parseNumeric reads a tar numeric field as archive/tar does: base-256 when the high bit
// of the first byte is set, octal otherwise (NULs and spaces around it ignored). Negative
// base-256 values are refused.
func parseNumeric(b []byte) (int64, bool) {
	if len(b) > 0 && b[0]&0x80 != 0 {
		if b[0]&0x40 != 0 {
			return 0, false
		}
		var x uint64
		for i, c := range b {
			if i == 0 {
				c &= 0x7f
			}
			if x>>55 != 0 {
				return 0, false
			}
			x = x<<8 | uint64(c)
		}
		return int64(x), true
	}
	b = bytes.Trim(b, " \x00")
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	if len(b) == 0 {
		return 0, true
	}
	x, err := strconv.ParseUint(string(b), 8, 63)
	return int64(x), err == nil
}

// parseDecimal reads one non-negative decimal number of a sparse map: digits only.
func parseDecimal(s string) (int64, error) {
	if s == "" || s[0] < '0' || s[0] > '9' {
		return 0, fmt.Errorf("sparse map: %q is not a decimal number", truncate(s))
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("sparse map: %q is not a decimal number", truncate(s))
	}
	return n, nil
}

func truncate(s string) string {
	if len(s) > 32 {
		return s[:32] + "..."
	}
	return s
}

// parseCount reads the number of segments a map announces, capped by MaxSparseSegments.
func parseCount(s string) (int, error) {
	n, err := parseDecimal(s)
	if err != nil {
		return 0, err
	}
	if n > MaxSparseSegments {
		return 0, fmt.Errorf("sparse map: %d segments, over the limit of %d", n, MaxSparseSegments)
	}
	return int(n), nil
}

// parseSparse0x1 reads the map of PAX sparse formats 0.0 and 0.1: the count in
// GNU.sparse.numblocks and "offset,length,..." in GNU.sparse.map (archive/tar joins the
// 0.0 format's repeated GNU.sparse.offset and GNU.sparse.numbytes records into that).
func parseSparse0x1(count, list string) ([]Segment, error) {
	n, err := parseCount(count)
	if err != nil {
		return nil, err
	}
	fields := 0
	if list != "" {
		fields = strings.Count(list, ",") + 1
	}
	if fields != 2*n {
		return nil, fmt.Errorf("sparse map: GNU.sparse.numblocks says %d segments, GNU.sparse.map holds %d numbers", n, fields)
	}
	segs := make([]Segment, 0, n)
	for range n {
		var off, length string
		off, list, _ = strings.Cut(list, ",")
		length, list, _ = strings.Cut(list, ",")
		s, err := segment(off, length)
		if err != nil {
			return nil, err
		}
		segs = append(segs, s)
	}
	return segs, nil
}

func segment(off, length string) (Segment, error) {
	o, err := parseDecimal(off)
	if err != nil {
		return Segment{}, err
	}
	l, err := parseDecimal(length)
	if err != nil {
		return Segment{}, err
	}
	return Segment{o, l}, nil
}

// parseSparse1x0 reads the map of PAX sparse format 1.0 from the start of the entry's
// data: the count, then an offset and a length for each segment, each a decimal number
// ending in a newline, padded with zeros to a whole block. It returns the segments and the
// bytes the map takes.
func parseSparse1x0(b []byte) ([]Segment, int, error) {
	pos := 0
	next := func() (string, error) {
		i := bytes.IndexByte(b[pos:], '\n')
		if i < 0 {
			return "", errors.New("sparse map: format 1.0 map ends before its last number")
		}
		s := string(b[pos : pos+i])
		pos += i + 1
		return s, nil
	}
	tok, err := next()
	if err != nil {
		return nil, 0, err
	}
	n, err := parseCount(tok)
	if err != nil {
		return nil, 0, err
	}
	segs := make([]Segment, 0, min(n, 1024))
	for range n {
		off, err := next()
		if err != nil {
			return nil, 0, err
		}
		length, err := next()
		if err != nil {
			return nil, 0, err
		}
		s, err := segment(off, length)
		if err != nil {
			return nil, 0, err
		}
		segs = append(segs, s)
	}
	return segs, (pos + 511) &^ 511, nil
}

// parseOldGNUMap reads the map of the old GNU sparse format: up to four segments in the
// header block, and 21 in each extension block that follows while the block before says
// one is coming. ext holds the extension blocks, and nothing else.
func parseOldGNUMap(main, ext []byte) ([]Segment, error) {
	var segs []Segment
	// read reads the entries of one block until an empty offset.
	read := func(b []byte, count int) error {
		for i := range count {
			e := b[i*24 : i*24+24]
			if e[0] == 0 {
				break
			}
			off, ok1 := parseNumeric(e[:12])
			length, ok2 := parseNumeric(e[12:])
			if !ok1 || !ok2 {
				return errors.New("sparse map: invalid number in an old GNU sparse header")
			}
			if len(segs) >= MaxSparseSegments {
				return fmt.Errorf("sparse map: over the limit of %d segments", MaxSparseSegments)
			}
			segs = append(segs, Segment{off, length})
		}
		return nil
	}
	if err := read(main[386:], 4); err != nil {
		return nil, err
	}
	more := main[482] != 0
	for more {
		if len(ext) < 512 {
			return nil, errors.New("sparse map: an old GNU sparse extension block is missing")
		}
		if err := read(ext, 21); err != nil {
			return nil, err
		}
		more = ext[504] != 0
		ext = ext[512:]
	}
	if len(ext) != 0 {
		return nil, fmt.Errorf("sparse map: %d bytes after the last old GNU sparse extension block", len(ext))
	}
	return segs, nil
}

// checkSegments checks a parsed map against the file's size and the bytes of data that
// follow it in the stream: segments sorted, apart and inside the file, their lengths adding
// up to the data. It returns the segments without empty ones, adjacent ones merged; never
// nil, so that a file that is one hole still reads as sparse.
func checkSegments(segs []Segment, size, physical int64) ([]Segment, error) {
	if size < 0 {
		return nil, fmt.Errorf("sparse entry: size %d", size)
	}
	out := segs[:0]
	var end, total int64
	for i, s := range segs {
		switch {
		case s.Offset < 0 || s.Length < 0:
			return nil, fmt.Errorf("sparse map: segment %d has a negative offset or length", i)
		case s.Length > size || s.Offset > size-s.Length:
			return nil, fmt.Errorf("sparse map: segment %d (offset %d, length %d) ends past the file's size %d", i, s.Offset, s.Length, size)
		case s.Offset < end:
			return nil, fmt.Errorf("sparse map: segment %d (offset %d) starts before the end of the one before (%d): segments must be sorted and apart", i, s.Offset, end)
		}
		total += s.Length // no overflow: segments are apart and inside size
		if s.Length == 0 {
			end = s.Offset
			continue
		}
		if k := len(out); k > 0 && out[k-1].End() == s.Offset {
			out[k-1].Length += s.Length
		} else {
			out = append(out, s)
		}
		end = s.End()
	}
	if total != physical {
		return nil, fmt.Errorf("sparse map: segments hold %d bytes, the entry has %d bytes of data", total, physical)
	}
	if out == nil {
		out = []Segment{}
	}
	return out, nil
}

// sparseBody is the body of a sparse entry as a sink reads it: Read gives every byte,
// holes as zeros; Seek moves forward, over holes without reading anything.
type sparseBody struct {
	src  *tarSource
	segs []Segment
	size int64
	pos  int64 // logical position
	i    int   // the first segment that ends after pos
	skip []byte
}

var _ io.ReadSeeker = (*sparseBody)(nil)

func (b *sparseBody) reset(src *tarSource, segs []Segment, size int64) *sparseBody {
	b.src, b.segs, b.size, b.pos, b.i = src, segs, size, 0, 0
	return b
}

// Read implements io.Reader.
func (b *sparseBody) Read(p []byte) (int, error) {
	if b.pos >= b.size {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), b.size-b.pos)]
	if b.i < len(b.segs) && b.pos >= b.segs[b.i].Offset {
		s := b.segs[b.i]
		n, err := b.src.take(p[:min(int64(len(p)), s.End()-b.pos)])
		b.pos += int64(n)
		if b.pos == s.End() {
			b.i++
		}
		return n, err
	}
	next := b.size
	if b.i < len(b.segs) {
		next = b.segs[b.i].Offset
	}
	n := min(int64(len(p)), next-b.pos)
	clear(p[:n])
	b.pos += n
	return int(n), nil
}

// Seek implements io.Seeker, forward only: the offset (from the start, or from the current
// position) must not be behind the current position nor past the end. Holes passed over
// cost nothing; data passed over is read and dropped.
func (b *sparseBody) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += b.pos
	default:
		return b.pos, errors.New("layerapply: sparse body seeks from the start or the current position only")
	}
	if offset < b.pos || offset > b.size {
		return b.pos, fmt.Errorf("layerapply: sparse body seeks forward only, up to its size: %d from %d", offset, b.pos)
	}
	for b.pos < offset {
		if b.i < len(b.segs) && b.pos >= b.segs[b.i].Offset {
			if b.skip == nil {
				b.skip = make([]byte, 32<<10)
			}
			n := min(int64(len(b.skip)), offset-b.pos)
			if _, err := b.Read(b.skip[:n]); err != nil {
				return b.pos, err
			}
			continue
		}
		next := b.size
		if b.i < len(b.segs) {
			next = b.segs[b.i].Offset
		}
		b.pos = min(offset, next)
	}
	return b.pos, nil
}

// eachSegment reads the body of the regular file e and calls fn for each run of its data
// in order, with a reader of exactly n bytes at offset off. A dense file is one run of
// e.Size bytes. Between the runs of a sparse file (e.Sparse set) the body is sought past
// when it is an io.Seeker and read and dropped otherwise.
func eachSegment(e *Entry, body io.Reader, fn func(off int64, r io.Reader, n int64) error) error {
	if e.Sparse == nil {
		return fn(0, body, e.Size)
	}
	sk, _ := body.(io.Seeker)
	var pos int64
	for _, s := range e.Sparse {
		if gap := s.Offset - pos; gap > 0 {
			var err error
			if sk != nil {
				_, err = sk.Seek(s.Offset, io.SeekStart)
			} else {
				_, err = io.CopyN(io.Discard, body, gap)
			}
			if err != nil {
				return fmt.Errorf("skip hole at %d: %w", pos, err)
			}
		}
		if err := fn(s.Offset, io.LimitReader(body, s.Length), s.Length); err != nil {
			return err
		}
		pos = s.End()
	}
	return nil
}

// sparseDiagnosis says what is wrong with a sparse entry that archive/tar refused, when rec
// (the headers Next read before failing, see tarSource.headers) holds one: archive/tar says
// only "invalid tar header". It returns the entry's name and the reason, or nil when rec
// holds no sparse entry or its map looks right.
func sparseDiagnosis(rec []byte) (string, error) {
	var pax map[string]string
	var main, tail []byte
	for b := rec; len(b) >= 512 && main == nil; {
		h := b[:512]
		switch h[156] {
		case tar.TypeXHeader, tar.TypeGNULongName, tar.TypeGNULongLink:
			n, ok := parseNumeric(h[124:136])
			if !ok || n < 0 {
				return "", nil
			}
			if h[156] == tar.TypeXHeader {
				pax = paxRecords(b[512:min(int64(len(b)), 512+n)])
			}
			if 512+(n+511)&^511 > int64(len(b)) {
				return "", nil
			}
			b = b[512+(n+511)&^511:]
		default:
			main, tail = h, b[512:]
		}
	}
	if main == nil {
		return "", nil
	}
	name := string(main[:100])
	if i := strings.IndexByte(name, 0); i >= 0 {
		name = name[:i]
	}
	for _, k := range []string{"path", "GNU.sparse.name"} {
		if pax[k] != "" {
			name = pax[k]
		}
	}
	physical, _ := parseNumeric(main[124:136])
	if v, err := strconv.ParseInt(pax["size"], 10, 64); err == nil {
		physical = v
	}
	var segs []Segment
	var err error
	size := physical
	switch {
	case main[156] == tar.TypeGNUSparse:
		segs, err = parseOldGNUMap(main, tail)
		size, _ = parseNumeric(main[483:495])
	case isSparse(&tar.Header{PAXRecords: pax}):
		for _, k := range []string{"GNU.sparse.realsize", "GNU.sparse.size"} {
			if v, perr := strconv.ParseInt(pax[k], 10, 64); perr == nil {
				size = v
			}
		}
		if pax["GNU.sparse.major"] == "1" {
			var used int
			segs, used, err = parseSparse1x0(tail)
			physical -= int64(used)
		} else {
			segs, err = parseSparse0x1(pax["GNU.sparse.numblocks"], pax["GNU.sparse.map"])
		}
	default:
		return "", nil
	}
	if err == nil {
		_, err = checkSegments(segs, size, physical)
	}
	return name, err
}

// paxRecords reads PAX records ("LEN KEY=VALUE\n") as far as they are well formed, joining
// the 0.0 sparse format's GNU.sparse.offset and GNU.sparse.numbytes records into
// GNU.sparse.map as archive/tar does.
func paxRecords(b []byte) map[string]string {
	recs := map[string]string{}
	var list []string
	for len(b) > 0 {
		sp := bytes.IndexByte(b, ' ')
		if sp <= 0 {
			break
		}
		n, err := strconv.Atoi(string(b[:sp]))
		if err != nil || n <= sp+1 || n > len(b) || b[n-1] != '\n' {
			break
		}
		k, v, ok := strings.Cut(string(b[sp+1:n-1]), "=")
		if !ok {
			break
		}
		switch k {
		case "GNU.sparse.offset", "GNU.sparse.numbytes":
			list = append(list, v)
		default:
			recs[k] = v
		}
		b = b[n:]
	}
	if len(list) > 0 {
		recs["GNU.sparse.map"] = strings.Join(list, ",")
	}
	return recs
}
