package layerapply_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/img2ext4/img2ext4/internal/tartest"
	"github.com/img2ext4/img2ext4/layerapply"
)

// The encoders below write tar headers byte by byte, as the formats' documents lay them
// out, independently of the code under test, so hostile maps can be built that no
// tar writer would make.

// block pads b to whole 512-byte blocks.
func block(b []byte) []byte { return append(b, make([]byte, -len(b)&511)...) }

// ustarHeader encodes a header block; gnu selects the GNU magic, sparse fills the old GNU
// sparse area (offset 386: four 24-byte entries, isextended, realsize).
func ustarHeader(name string, typ byte, size int64, gnu bool, sparse []byte) []byte {
	h := make([]byte, 512)
	copy(h, name)
	copy(h[100:], "0000644\x00")
	copy(h[108:], "0000000\x00")
	copy(h[116:], "0000000\x00")
	copy(h[124:], fmt.Sprintf("%011o\x00", size))
	copy(h[136:], "00000000000\x00")
	h[156] = typ
	if gnu {
		copy(h[257:], "ustar  \x00")
		copy(h[386:], sparse)
	} else {
		copy(h[257:], "ustar\x0000")
	}
	copy(h[148:], "        ")
	sum := 0
	for _, c := range h {
		sum += int(c)
	}
	copy(h[148:], fmt.Sprintf("%06o\x00 ", sum))
	return h
}

// paxData encodes PAX records in order.
func paxData(recs ...string) []byte {
	var b []byte
	for i := 0; i+1 < len(recs); i += 2 {
		kv := " " + recs[i] + "=" + recs[i+1] + "\n"
		n := len(kv) + 1
		for len(strconv.Itoa(n))+len(kv) != n {
			n++
		}
		b = append(b, strconv.Itoa(n)+kv...)
	}
	return b
}

// paxSparse is a PAX entry: the records, then a regular header of the data's size.
func paxSparse(data []byte, recs ...string) []byte {
	pax := paxData(recs...)
	out := ustarHeader("PaxHeaders/f", 'x', int64(len(pax)), false, nil)
	out = append(out, block(pax)...)
	out = append(out, ustarHeader("GNUSparseFile.0/f", '0', int64(len(data)), false, nil)...)
	return append(out, block(data)...)
}

// oldGNU is a type 'S' entry: entries are offset/length pairs in the header (up to four),
// then in extension blocks of 21; realsize is the file's size.
func oldGNU(realsize int64, data []byte, pairs ...int64) []byte {
	num := func(v int64) string { return fmt.Sprintf("%011o\x00", v) }
	var sp []byte
	n := min(len(pairs)/2, 4)
	for i := range n {
		sp = append(sp, num(pairs[2*i])+num(pairs[2*i+1])...)
	}
	sp = append(sp, make([]byte, 96-len(sp))...)
	more := len(pairs)/2 > 4
	if more {
		sp = append(sp, 1)
	} else {
		sp = append(sp, 0)
	}
	sp = append(sp, num(realsize)...)
	out := ustarHeader("f", 'S', int64(len(data)), true, sp)
	for rest := pairs[2*n:]; len(rest) > 0; {
		k := min(len(rest)/2, 21)
		ext := make([]byte, 512)
		for i := range k {
			copy(ext[i*24:], num(rest[2*i])+num(rest[2*i+1]))
		}
		rest = rest[2*k:]
		if len(rest) > 0 {
			ext[504] = 1
		}
		out = append(out, ext...)
	}
	return append(out, block(data)...)
}

func end(b []byte) []byte { return append(b, make([]byte, 1024)...) }

// TestSparseHostile feeds maps no honest tar writes: each is refused with an error saying
// what is wrong, never a panic, and without allocating for the segments a map only claims.
func TestSparseHostile(t *testing.T) {
	d20 := bytes.Repeat([]byte("d"), 20)
	v01 := func(size, count, list string) []byte {
		return end(paxSparse(d20, "GNU.sparse.major", "0", "GNU.sparse.minor", "1", "GNU.sparse.name", "f",
			"GNU.sparse.size", size, "GNU.sparse.numblocks", count, "GNU.sparse.map", list))
	}
	v10 := func(size, m string, data []byte) []byte {
		return end(paxSparse(append(block([]byte(m)), data...), "GNU.sparse.major", "1", "GNU.sparse.minor", "0",
			"GNU.sparse.name", "f", "GNU.sparse.realsize", size))
	}
	cases := []struct {
		name  string
		layer []byte
		want  string
	}{
		{"0.1 overlapping", v01("100", "2", "0,10,5,10"), "starts before the end of the one before"},
		{"0.1 unsorted", v01("100", "2", "50,10,0,10"), "starts before the end of the one before"},
		{"0.1 beyond size", v01("100", "1", "95,20"), "past the file's size"},
		{"0.1 huge count", v01("100", "1000000000000", "0,20"), "over the limit"},
		{"0.1 count mismatch", v01("100", "3", "0,20"), "holds 2 numbers"},
		{"0.1 negative", v01("100", "1", "-1,20"), "not a decimal number"},
		{"0.0 overlapping", end(paxSparse(d20, "GNU.sparse.size", "100", "GNU.sparse.numblocks", "2",
			"GNU.sparse.offset", "0", "GNU.sparse.numbytes", "10", "GNU.sparse.offset", "5", "GNU.sparse.numbytes", "10")),
			"starts before the end of the one before"},
		{"1.0 overlapping", v10("100", "2\n0\n10\n5\n10\n", d20), "starts before the end of the one before"},
		{"1.0 beyond size", v10("100", "1\n90\n20\n", d20), "past the file's size"},
		{"1.0 huge count", v10("100", "99999999999\n0\n20\n", d20), "over the limit"},
		{"1.0 truncated map", paxSparse([]byte("3\n0\n10\n5\n"), "GNU.sparse.major", "1", "GNU.sparse.minor", "0",
			"GNU.sparse.name", "f", "GNU.sparse.realsize", "100"), "ends before its last number"},
		{"1.0 not a number", v10("100", "1\n0\nx\n", d20), "not a decimal number"},
		{"1.0 data short", v10("100", "1\n0\n40\n", d20), "segments hold 40 bytes, the entry has 20"},
		{"1.0 data long", v10("100", "1\n0\n10\n", d20), "segments hold 10 bytes, the entry has 20"},
		{"gnu overlapping", end(oldGNU(100, d20, 0, 10, 5, 10)), "starts before the end of the one before"},
		{"gnu beyond size", end(oldGNU(100, d20, 90, 20)), "past the file's size"},
		{"gnu extension missing", oldGNU(100, d20, 0, 4, 4, 4, 8, 4, 12, 4, 16, 4)[:512], "extension block is missing"},
		{"gnu unsorted in extension", end(oldGNU(200, d20, 0, 4, 10, 4, 20, 4, 30, 4, 5, 4)), "starts before the end of the one before"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, err := layerapply.NewDir(filepath.Join(t.TempDir(), "root"))
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			err = layerapply.Apply(context.Background(), d, tartest.Image(tc.layer))
			runtime.ReadMemStats(&after)
			if err == nil {
				t.Fatal("applied")
			}
			if !errors.Is(err, layerapply.ErrInvalidEntry) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want ErrInvalidEntry saying %q", err, tc.want)
			}
			if a := after.TotalAlloc - before.TotalAlloc; a > 32<<20 {
				t.Errorf("allocated %d bytes", a)
			}
		})
	}
}

// TestSparseHostileSeeds checks the encoders above against archive/tar: the honest forms
// of each format read back as the file they describe, so the hostile ones differ from an
// honest archive only in their maps.
func TestSparseHostileSeeds(t *testing.T) {
	want := append(append(bytes.Repeat([]byte{0}, 10), "dddddddddd"...), make([]byte, 80)...)
	want[0] = 'a'
	body := append([]byte("a"), bytes.Repeat([]byte("d"), 10)...)
	for name, layer := range map[string][]byte{
		"0.1": end(paxSparse(body, "GNU.sparse.major", "0", "GNU.sparse.minor", "1", "GNU.sparse.name", "f",
			"GNU.sparse.size", "100", "GNU.sparse.numblocks", "2", "GNU.sparse.map", "0,1,10,10")),
		"0.0": end(paxSparse(body, "GNU.sparse.size", "100", "GNU.sparse.numblocks", "2",
			"GNU.sparse.offset", "0", "GNU.sparse.numbytes", "1", "GNU.sparse.offset", "10", "GNU.sparse.numbytes", "10")),
		"1.0": end(paxSparse(append(block([]byte("3\n0\n1\n10\n10\n100\n0\n")), body...), "GNU.sparse.major", "1",
			"GNU.sparse.minor", "0", "GNU.sparse.name", "f", "GNU.sparse.realsize", "100")),
		"gnu": end(oldGNU(100, body, 0, 1, 10, 10)),
	} {
		t.Run(name, func(t *testing.T) {
			tr := tar.NewReader(bytes.NewReader(layer))
			hdr, err := tr.Next()
			if err != nil {
				t.Fatalf("archive/tar: %v", err)
			}
			if b, err := io.ReadAll(tr); err != nil || !bytes.Equal(b, want) {
				t.Fatalf("archive/tar reads %q (%v), want %q", b, err, want)
			}
			root := filepath.Join(t.TempDir(), "root")
			d, err := layerapply.NewDir(root)
			if err != nil {
				t.Fatal(err)
			}
			if err := layerapply.Apply(context.Background(), d, tartest.Image(layer)); err != nil {
				t.Fatal(err)
			}
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(filepath.Join(root, hdr.Name))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("got %q, want %q", got, want)
			}
		})
	}
}

// memSink keeps the regular files it gets, reading sparse bodies segment by segment
// through their Seek, or with readAll whole through Read (holes as zeros); files over 1 MiB
// are only counted.
type memSink struct {
	files   map[string][]byte
	sizes   map[string]int64
	readAll bool
}

func (s *memSink) Entry(e *layerapply.Entry, body io.Reader) error {
	if e.Type != layerapply.TypeReg {
		return nil
	}
	s.sizes[e.Path] = e.Size
	var buf []byte
	if e.Size <= 1<<20 {
		buf = make([]byte, e.Size)
	}
	segs, seek := e.Sparse, e.Sparse != nil
	if segs == nil || s.readAll && buf != nil {
		segs, seek = []layerapply.Segment{{Offset: 0, Length: e.Size}}, false
	}
	sk, ok := body.(io.Seeker)
	if e.Sparse != nil && !ok {
		return errors.New("sparse body is no io.Seeker")
	}
	for _, sg := range segs {
		if seek {
			if _, err := sk.Seek(sg.Offset, io.SeekStart); err != nil {
				return err
			}
		}
		var err error
		if buf != nil {
			_, err = io.ReadFull(body, buf[sg.Offset:sg.End()])
		} else {
			_, err = io.CopyN(io.Discard, body, sg.Length)
		}
		if err != nil {
			return err
		}
	}
	s.files[e.Path] = buf
	return nil
}

func (s *memSink) Whiteout(string) error { return nil }
func (s *memSink) Opaque(string) error   { return nil }

// fuzzSparseLayer builds a one-entry layer of a sparse format (kind modulo 4: PAX 0.0, 0.1,
// 1.0, old GNU; kind&4 makes the sink read the body whole) from a map m and data: for 0.x, m is "COUNT|OFF,LEN,..."; for 1.0 the text
// at the start of the data; for old GNU the raw bytes of the header's sparse area and of
// the extension blocks after it.
func fuzzSparseLayer(kind byte, size int64, m, data []byte) []byte {
	sz := strconv.FormatInt(size, 10)
	switch kind % 4 {
	case 0, 1:
		count, list, _ := strings.Cut(string(m), "|")
		if kind%4 == 1 {
			return end(paxSparse(data, "GNU.sparse.major", "0", "GNU.sparse.minor", "1", "GNU.sparse.name", "f",
				"GNU.sparse.size", sz, "GNU.sparse.numblocks", count, "GNU.sparse.map", list))
		}
		recs := []string{"GNU.sparse.size", sz, "GNU.sparse.numblocks", count}
		for i, v := range strings.Split(list, ",") {
			recs = append(recs, []string{"GNU.sparse.offset", "GNU.sparse.numbytes"}[i%2], v)
		}
		return end(paxSparse(data, recs...))
	case 2:
		return end(paxSparse(append(block(m), data...), "GNU.sparse.major", "1", "GNU.sparse.minor", "0",
			"GNU.sparse.name", "f", "GNU.sparse.realsize", sz))
	}
	area := m[:min(len(m), 96+1+12)]
	h := ustarHeader("f", 'S', int64(len(data)), true, area)
	return end(append(append(h, block(m[len(area):])...), block(data)...))
}

// FuzzSparseMap applies sparse entries built from fuzzed maps and checks them against
// archive/tar: what it refuses is refused; what it reads in full is read to the same
// bytes, or refused as a sparse map that breaks the stricter rules here; nothing panics.
// Seeds include every format's honest form and the hostile table's maps.
func FuzzSparseMap(f *testing.F) {
	for _, s := range []struct {
		kind byte
		size int64
		m    string
		data string
	}{
		{0, 100, "2|0,1,10,10", "adddddddddd"},
		{1, 100, "2|0,1,10,10", "adddddddddd"},
		{1, 100, "2|0,10,5,10", "dddddddddddddddddddd"},
		{1, 100, "1000000000000|0,20", "dddddddddddddddddddd"},
		{1, 1 << 40, "1|1099511627770,6", "dddddd"},
		{2, 100, "3\n0\n1\n10\n10\n100\n0\n", "adddddddddd"},
		{6, 100, "3\n0\n1\n10\n10\n100\n0\n", "adddddddddd"},
		{7, 0, "00000000000\x0000000000001\x0000000000012\x0000000000012\x00" + strings.Repeat("\x00", 48) + "\x0000000000144\x00", "adddddddddd"},
		{2, 100, "2\n0\n10\n5\n10\n", "dddddddddddddddddddd"},
		{2, 100, "99999999999\n0\n20\n", "dddddddddddddddddddd"},
		{2, 100, "+1\n0\n20\n", "dddddddddddddddddddd"},
		{2, 1 << 40, "1\n1099511627770\n6\n", "dddddd"},
		{3, 0, "00000000000\x0000000000001\x0000000000012\x0000000000012\x00" + strings.Repeat("\x00", 48) + "\x0000000000144\x00", "adddddddddd"},
		{3, 0, "00000000000\x0000000000024\x00" + strings.Repeat("\x00", 72) + "\x01" + "00000000144\x00" + "00000000040\x0000000000004\x00", "dddddddddddddddddddddddd"},
	} {
		f.Add(s.kind, s.size, []byte(s.m), []byte(s.data))
	}
	f.Fuzz(func(t *testing.T, kind byte, size int64, m, data []byte) {
		if len(m) > 64<<10 || len(data) > 64<<10 {
			return
		}
		layer := fuzzSparseLayer(kind, size, m, data)

		// archive/tar, which fills holes with zeros: only small files are read.
		var want map[string][]byte
		var wantErr error
		tr := tar.NewReader(bytes.NewReader(layer))
		for {
			hdr, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				wantErr = err
				break
			}
			if hdr.Size <= 1<<20 {
				b, err := io.ReadAll(tr)
				if err != nil {
					wantErr = err
					break
				}
				if want == nil {
					want = map[string][]byte{}
				}
				want[path.Clean(hdr.Name)] = b
			}
		}

		s := &memSink{files: map[string][]byte{}, sizes: map[string]int64{}, readAll: kind&4 != 0}
		err := layerapply.Apply(context.Background(), s, tartest.Image(layer))
		switch {
		case wantErr != nil && err == nil:
			t.Fatalf("archive/tar refuses the entry (%v), Apply takes it", wantErr)
		case wantErr == nil && err != nil:
			if !strings.Contains(err.Error(), "sparse") {
				t.Fatalf("archive/tar reads the entry, Apply refuses it for no reason about its map: %v", err)
			}
		case err == nil:
			for name, b := range want {
				if got, ok := s.files[name]; !ok || !bytes.Equal(got, b) {
					t.Fatalf("%s: Apply reads %q, archive/tar %q", name, got, b)
				}
			}
		}
	})
}
