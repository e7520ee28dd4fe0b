package layerapply_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/img2ext4/img2ext4/internal/tartest"
	"github.com/img2ext4/img2ext4/layerapply"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// rawLayer is a layer whose blob and diff_id are exactly what the test says.
type rawLayer struct {
	blob   []byte
	diffID v1.Hash
	mt     types.MediaType
}

func hashOf(b []byte) v1.Hash {
	h, _, _ := v1.SHA256(bytes.NewReader(b))
	return h
}

func (l *rawLayer) Digest() (v1.Hash, error) { return hashOf(l.blob), nil }
func (l *rawLayer) DiffID() (v1.Hash, error) { return l.diffID, nil }
func (l *rawLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.blob)), nil
}
func (l *rawLayer) Uncompressed() (io.ReadCloser, error) {
	return nil, errors.New("not used by layerapply")
}
func (l *rawLayer) Size() (int64, error)                { return int64(len(l.blob)), nil }
func (l *rawLayer) MediaType() (types.MediaType, error) { return l.mt, nil }

func gz(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func zst(b []byte) []byte {
	var buf bytes.Buffer
	w, _ := zstd.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func imageOf(t *testing.T, ls ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, ls...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func applyImage(t *testing.T, img v1.Image) ([]string, error) {
	t.Helper()
	var buf bytes.Buffer
	s, _ := layerapply.NewTar(&buf, t.TempDir())
	err := layerapply.Apply(context.Background(), s, img)
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	return tarShort(t, buf.Bytes()), nil
}

func TestCompressions(t *testing.T) {
	l1 := tartest.Tar(tartest.File("a", "gzip"))
	l2 := tartest.Tar(tartest.File("b", "zstd"))
	l3 := tartest.Tar(tartest.File("c", "plain"))
	// Trailing bytes after the end-of-archive marker are part of the diff_id.
	l4 := append(tartest.Tar(tartest.File("d", "junk after")), bytes.Repeat([]byte{0xAA}, 10000)...)
	img := imageOf(t,
		&rawLayer{blob: gz(l1), diffID: hashOf(l1), mt: types.DockerLayer},
		&rawLayer{blob: zst(l2), diffID: hashOf(l2), mt: types.OCILayerZStd},
		&rawLayer{blob: l3, diffID: hashOf(l3), mt: types.OCIUncompressedLayer},
		&rawLayer{blob: gz(l4), diffID: hashOf(l4), mt: types.OCILayer},
	)
	got, err := applyImage(t, img)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"a = gzip", "b = zstd", "c = plain", "d = junk after"}
	if d := diffLines(want, got); d != "" {
		t.Fatal(d)
	}
}

func diffLines(want, got []string) string {
	if strings.Join(want, "\n") == strings.Join(got, "\n") {
		return ""
	}
	return "want:\n" + strings.Join(want, "\n") + "\ngot:\n" + strings.Join(got, "\n")
}

func TestIntegrityErrors(t *testing.T) {
	good := tartest.Tar(tartest.File("a", strings.Repeat("content ", 1000)))
	wrong := sha256.Sum256([]byte("something else"))
	trunc := gz(good)
	trunc = trunc[:len(trunc)/2]
	corrupt := gz(good)
	corrupt[len(corrupt)/2] ^= 0xff
	cases := []struct {
		name  string
		layer *rawLayer
		want  string
		is    error
	}{
		{"wrong diff_id", &rawLayer{blob: gz(good), diffID: v1.Hash{Algorithm: "sha256", Hex: hexOf(wrong[:])}}, "does not match config diff_id", layerapply.ErrDiffIDMismatch},
		{"truncated gzip", &rawLayer{blob: trunc, diffID: hashOf(good)}, "unexpected EOF", nil},
		{"corrupted gzip", &rawLayer{blob: corrupt, diffID: hashOf(good)}, "layer sha256:", nil},
		{"truncated plain tar", &rawLayer{blob: good[:700], diffID: hashOf(good[:700])}, "unexpected EOF", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := applyImage(t, imageOf(t, tc.layer))
			if err == nil {
				t.Fatal("applied without error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v is not %v", err, tc.is)
			}
			if !strings.Contains(err.Error(), "sha256:") {
				t.Errorf("error %q does not name the layer digest", err)
			}
		})
	}
}

func hexOf(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 2*len(b))
	for i, c := range b {
		out[2*i], out[2*i+1] = digits[c>>4], digits[c&15]
	}
	return string(out)
}

func TestLimits(t *testing.T) {
	l := tartest.Tar(tartest.File("a", "1"), tartest.File("b", "2"), tartest.File("ccc", strings.Repeat("x", 5000)))
	img := tartest.Image(l)
	cases := []struct {
		name string
		lim  layerapply.Limits
	}{
		{"entries", layerapply.Limits{Entries: 2}},
		{"bytes", layerapply.Limits{Bytes: 4096}},
		{"path length", layerapply.Limits{PathLen: 2}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, _ := layerapply.NewDir(filepath.Join(t.TempDir(), "r"))
			defer d.Close()
			err := layerapply.Apply(context.Background(), d, img, layerapply.WithLimits(tc.lim))
			var le *layerapply.LimitError
			if !errors.Is(err, layerapply.ErrLimit) || !errors.As(err, &le) {
				t.Fatalf("err = %v, want a LimitError", err)
			}
		})
	}
	if err := layerapply.WithLimits(layerapply.Limits{Entries: -1})(nil); err == nil {
		t.Error("negative limit accepted")
	}
}

func TestCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	d, _ := layerapply.NewDir(filepath.Join(t.TempDir(), "r"))
	defer d.Close()
	err := layerapply.Apply(ctx, d, tartest.Image(tartest.Tar(tartest.File("a", "1"))))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

// TestIntegrityErrorsAhead puts the bad blob in the second layer, which is decompressed
// ahead (in memory, or into a temporary file when the memory budget is 0) while the first
// is applied: the errors must be the same.
func TestIntegrityErrorsAhead(t *testing.T) {
	first := tartest.Tar(tartest.File("first", "1"))
	good := tartest.Tar(tartest.File("a", strings.Repeat("content ", 1000)))
	wrong := sha256.Sum256([]byte("something else"))
	trunc := gz(good)
	trunc = trunc[:len(trunc)/2]
	cases := []struct {
		name  string
		layer *rawLayer
		want  string
		is    error
	}{
		{"wrong diff_id", &rawLayer{blob: zst(good), diffID: v1.Hash{Algorithm: "sha256", Hex: hexOf(wrong[:])}}, "does not match config diff_id", layerapply.ErrDiffIDMismatch},
		{"truncated gzip", &rawLayer{blob: trunc, diffID: hashOf(good)}, "unexpected EOF", nil},
		{"truncated plain tar", &rawLayer{blob: good[:700], diffID: hashOf(good[:700])}, "unexpected EOF", nil},
	}
	for _, tc := range cases {
		for _, ahead := range []struct{ jobs, mem int }{{1, -1}, {2, -1}, {2, 0}, {4, 0}} {
			t.Run(fmt.Sprintf("%s/jobs=%d,mem=%d", tc.name, ahead.jobs, ahead.mem), func(t *testing.T) {
				img := imageOf(t, &rawLayer{blob: gz(first), diffID: hashOf(first)}, tc.layer)
				tmp := t.TempDir()
				var buf bytes.Buffer
				s, _ := layerapply.NewTar(&buf, tmp)
				defer s.Abort()
				err := layerapply.Apply(context.Background(), s, img, layerapply.WithJobs(ahead.jobs),
					layerapply.WithDecompressBuffer(int64(ahead.mem), -1), layerapply.WithTempDir(tmp))
				if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "sha256:") {
					t.Fatalf("err = %v, want it to mention %q and the layer digest", err, tc.want)
				}
				if tc.is != nil && !errors.Is(err, tc.is) {
					t.Errorf("error %v is not %v", err, tc.is)
				}
				if left, _ := os.ReadDir(tmp); len(left) != 0 {
					t.Errorf("temporary files left: %v", left)
				}
			})
		}
	}
}

// TestDecompressAheadSameTree applies a many-layer image with one decoder and with several
// decompressing ahead, in memory and spooled to temporary files: the results must be
// identical.
func TestDecompressAheadSameTree(t *testing.T) {
	var tars [][]byte
	for i := range 7 {
		tars = append(tars, tartest.Tar(tartest.File(fmt.Sprintf("f%d", i), strings.Repeat("x", i*10000)),
			tartest.File("shared", fmt.Sprint(i)), tartest.Whiteout(fmt.Sprintf("f%d", i-1))))
	}
	img := tartest.Image(tars...)
	var outs [][]byte
	for _, ahead := range []struct {
		jobs      int
		mem, disk int64
	}{{1, -1, -1}, {2, -1, -1}, {2, 0, -1}, {8, 0, -1}, {8, 0, 0}, {3, 20000, 30000}} {
		var buf bytes.Buffer
		s, _ := layerapply.NewTar(&buf, t.TempDir())
		if err := layerapply.Apply(context.Background(), s, img, layerapply.WithJobs(ahead.jobs),
			layerapply.WithDecompressBuffer(ahead.mem, ahead.disk), layerapply.WithTempDir(t.TempDir())); err != nil {
			t.Fatal(err)
		}
		s.Close()
		outs = append(outs, buf.Bytes())
	}
	for i := 1; i < len(outs); i++ {
		if !bytes.Equal(outs[0], outs[i]) {
			t.Errorf("decompress-ahead run %d differs from streaming", i)
		}
	}
	if err := layerapply.WithJobs(0)(nil); err == nil {
		t.Error("jobs 0 accepted")
	}
}
