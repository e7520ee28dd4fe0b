package artifact_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/img2ext4/img2ext4/artifact"
)

const (
	d1 = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	d2 = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
)

// chunk returns the JSON of a data chunk at off with the given length and blob digest.
func chunk(off, length int, digest string) string {
	return `{"offset":` + itoa(off) + `,"length":` + itoa(length) + `,"digest":"` + digest + `","size":100,"contentDigest":"` + d2 + `"}`
}

func hole(off, length int) string {
	return `{"offset":` + itoa(off) + `,"length":` + itoa(length) + `}`
}

func itoa(n int) string {
	const digits = "0123456789"
	if n < 10 {
		return digits[n : n+1]
	}
	return itoa(n/10) + digits[n%10:n%10+1]
}

func index(size int, chunks ...string) string {
	return `{"chunkSize":4096,"size":` + itoa(size) + `,"compression":"zstd","chunks":[` + strings.Join(chunks, ",") + `]}`
}

// indexCases are chunk indexes ParseIndex must accept (ok) or refuse.
var indexCases = []struct {
	name string
	json string
	ok   bool
}{
	{"empty image", index(0), true},
	{"one chunk", index(4096, chunk(0, 4096, d1)), true},
	{"short last chunk", index(5000, chunk(0, 4096, d1), chunk(4096, 904, d2)), true},
	{"blob used twice", index(8192, chunk(0, 4096, d1), chunk(4096, 4096, d1)), true},
	{"blob with two lengths", index(5000, chunk(0, 4096, d1), chunk(4096, 904, d1)), false},
	{"hole run then data", index(3*4096+10, hole(0, 8192), chunk(8192, 4096, d1), hole(12288, 10)), true},
	{"gap", index(8192, chunk(0, 4096, d1), chunk(8192-1, 1, d1)), false},
	{"overlap", index(8192, chunk(0, 4096, d1), chunk(4000, 4096, d1)), false},
	{"past the end", index(4096, chunk(0, 8192, d1)), false},
	{"short of the end", index(8192, chunk(0, 4096, d1)), false},
	{"long data chunk", index(8192, chunk(0, 8192, d1)), false},
	{"unaligned hole", index(8192, hole(0, 100), hole(100, 8092)), false},
	{"zero length", index(4096, hole(0, 0), hole(0, 4096)), false},
	{"chunk size not a power of two", strings.Replace(index(4096, chunk(0, 4096, d1)), "4096,", "5000,", 1), false},
	{"chunk size too small", `{"chunkSize":512,"size":0,"compression":"zstd","chunks":[]}`, false},
	{"other compression", strings.Replace(index(0), "zstd", "gzip", 1), false},
	{"unknown field", strings.Replace(index(0), `"size"`, `"extra":1,"size"`, 1), false},
	{"trailing data", index(0) + "{}", false},
	{"negative size", index(0)[:0] + `{"chunkSize":4096,"size":-1,"compression":"zstd","chunks":[]}`, false},
	{"huge size", `{"chunkSize":4096,"size":99999999999999999,"compression":"zstd","chunks":[]}`, false},
	{"bad digest", index(4096, chunk(0, 4096, "sha256:12")), false},
	{"sha512 digest", index(4096, chunk(0, 4096, "sha512:"+strings.Repeat("1", 128))), false},
	{"hole with a size", index(4096, `{"offset":0,"length":4096,"size":5}`), false},
	{"compressed size too large", index(4096, strings.Replace(chunk(0, 4096, d1), `"size":100`, `"size":999999`, 1)), false},
	{"blob with two sizes", index(8192, chunk(0, 4096, d1), strings.Replace(chunk(4096, 4096, d1), `"size":100`, `"size":101`, 1)), false},
	{"not JSON", "chunks", false},
}

func TestParseIndex(t *testing.T) {
	for _, tc := range indexCases {
		t.Run(tc.name, func(t *testing.T) {
			x, err := artifact.ParseIndex([]byte(tc.json))
			if tc.ok != (err == nil) {
				t.Fatalf("ParseIndex(%s) = %v, want ok %v", tc.json, err, tc.ok)
			}
			if err != nil && !errors.Is(err, artifact.ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			if err == nil {
				checkRoundTrip(t, x)
			}
		})
	}
}

// checkRoundTrip checks that an accepted index marshals to one that parses back equal,
// and that its chunks cover the image.
func checkRoundTrip(t *testing.T, x *artifact.Index) {
	t.Helper()
	b, err := x.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	y, err := artifact.ParseIndex(b)
	if err != nil {
		t.Fatalf("marshalled index %s does not parse: %v", b, err)
	}
	if !reflect.DeepEqual(x, y) {
		t.Fatalf("round trip changed the index:\n%+v\n%+v", x, y)
	}
	var end, data int64
	for _, c := range x.Chunks {
		if c.Offset != end || c.Length <= 0 || (!c.Hole() && c.Length > x.ChunkSize) {
			t.Fatalf("accepted chunk %+v after %d", c, end)
		}
		end += c.Length
		if !c.Hole() {
			data += c.Length
		}
	}
	if end != x.Size || data != x.DataBytes() {
		t.Fatalf("chunks end at %d with %d data bytes, size %d, DataBytes %d", end, data, x.Size, x.DataBytes())
	}
	for _, d := range x.Blobs() {
		if d.MediaType != artifact.ChunkMediaType || d.Size <= 0 {
			t.Fatalf("blob %+v", d)
		}
	}
}

// FuzzParseIndex feeds any bytes to ParseIndex: it never panics, every refusal wraps
// ErrCorrupt, and what it accepts covers the image and round-trips through Marshal.
func FuzzParseIndex(f *testing.F) {
	for _, tc := range indexCases {
		f.Add([]byte(tc.json))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		x, err := artifact.ParseIndex(b)
		if err != nil {
			if !errors.Is(err, artifact.ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		checkRoundTrip(t, x)
	})
}
