package layerstream_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os/exec"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/img2ext4/img2ext4/layerstream"
)

// maxOut caps what FuzzDecompress compares: small inputs can expand a lot.
const maxOut = 1 << 20

var errTooLong = errors.New("more than maxOut bytes")

// readMax reads r to its end or an error, at most maxOut bytes.
func readMax(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxOut+1))
	if err == nil && len(b) > maxOut {
		err = errTooLong
	}
	return b, err
}

// oracleDecode is what the blob decompresses to by the formats' own definitions, read
// by other decoders than layerstream's: a blob starting with the gzip magic (RFC 1952,
// 1f 8b) is a series of gzip members, read by the standard library's compress/gzip (and
// GNU gzip where the two disagree, see gnuGzip); one
// starting with the zstd frame magic (RFC 8878, 28 b5 2f fd) is a series of frames, read
// by the zstd command; anything else is an uncompressed tar, passed through. ok is false
// when that decoder refuses the blob; skip when it cannot say (no zstd command, or more
// than maxOut bytes out).
func oracleDecode(t *testing.T, blob []byte) (out []byte, ok, skip bool) {
	switch {
	case len(blob) >= 2 && blob[0] == 0x1f && blob[1] == 0x8b:
		zr, err := gzip.NewReader(bytes.NewReader(blob))
		if err != nil {
			return nil, false, false
		}
		out, err = readMax(zr)
		return out, err == nil, err == errTooLong
	case len(blob) >= 4 && blob[0] == 0x28 && blob[1] == 0xb5 && blob[2] == 0x2f && blob[3] == 0xfd:
		if _, err := exec.LookPath("zstd"); err != nil {
			return nil, false, true
		}
		cmd := exec.Command("zstd", "-d", "-c", "-q", "--memory=1024MB")
		cmd.Stdin = bytes.NewReader(blob)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		out, err = readMax(stdout)
		if err == errTooLong {
			cmd.Process.Kill()
			cmd.Wait()
			return nil, false, true
		}
		return out, cmd.Wait() == nil, false
	}
	return blob, true, false
}

// gnuGzip decompresses blob with GNU gzip: ok when it exits 0, not ok when it exits 1
// (an error); undecided when it only warns (exit 2, such as trailing garbage), is missing,
// or writes more than maxOut bytes.
func gnuGzip(blob []byte) (out []byte, ok, decided bool) {
	if _, err := exec.LookPath("gzip"); err != nil {
		return nil, false, false
	}
	cmd := exec.Command("gzip", "-d", "-c")
	cmd.Stdin = bytes.NewReader(blob)
	out, err := cmd.Output()
	var ee *exec.ExitError
	switch {
	case len(out) > maxOut:
		return nil, false, false
	case err == nil:
		return out, true, true
	case errors.As(err, &ee) && ee.ExitCode() == 1:
		return nil, false, true
	}
	return nil, false, false
}

// FuzzDecompress checks layerstream's compression sniffing and decoding against the
// formats' definitions (oracleDecode): [layerstream.Sniff] names the format the magic
// bytes say; [layerstream.Decompress] gives the bytes the other decoder gives, and fails
// where it fails; and one [layerstream.Decoder] used for blob a and then blob b gives
// for b what a fresh decode gives (its reused gzip and zstd state carries nothing over).
// [layerstream.CheckMediaType] passes a media type iff its structured-syntax suffix (after
// the last "+", parameters cut) names gzip, zstd or json, or there is none.
func FuzzDecompress(f *testing.F) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte("hello, "))
	zw.Close()
	one := gz.Len()
	zw = gzip.NewWriter(&gz)
	zw.Write([]byte("world"))
	zw.Close()
	// "hello" as one zstd frame (zstd -c), and a skippable frame before it.
	zst := []byte("\x28\xb5\x2f\xfd\x04\x58\x29\x00\x00\x68\x65\x6c\x6c\x6f\xa3\x6d\x9f\x88")
	skip := append([]byte("\x50\x2a\x4d\x18\x02\x00\x00\x00ab"), zst...)
	for _, s := range []struct{ a, b []byte }{
		{gz.Bytes(), zst}, {gz.Bytes()[:one], gz.Bytes()}, {zst, gz.Bytes()[:one+3]}, {skip, zst},
		{[]byte("plain tar bytes"), []byte{0x1f}}, {[]byte{0x1f, 0x8b}, []byte{0x28, 0xb5, 0x2f}},
		{append(gz.Bytes(), 0, 0), zst[:10]}, {append(append([]byte{}, zst...), zst...), nil},
	} {
		f.Add(s.a, s.b, string(types.OCILayer))
	}
	f.Add([]byte(nil), []byte(nil), "application/vnd.oci.image.layer.v1.tar+xz; x=y")
	f.Add([]byte(nil), []byte(nil), "application/x+json")
	f.Fuzz(func(t *testing.T, a, b []byte, mt string) {
		if len(a) > 1<<16 || len(b) > 1<<16 {
			return
		}
		err := layerstream.CheckMediaType(types.MediaType(mt))
		// RFC 6838: parameters start at the first ";"; the structured-syntax suffix is
		// what follows the last "+" before them.
		typ := mt
		if i := bytes.IndexByte([]byte(mt), ';'); i >= 0 {
			typ = mt[:i]
		}
		suffix, hasPlus := "", false
		if i := bytes.LastIndexByte([]byte(typ), '+'); i >= 0 {
			suffix, hasPlus = string(bytes.TrimSpace([]byte(typ[i+1:]))), true
		}
		if pass := !hasPlus || suffix == "gzip" || suffix == "zstd" || suffix == "json"; pass != (err == nil) {
			t.Fatalf("CheckMediaType(%q) = %v", mt, err)
		}

		var d layerstream.Decoder
		defer d.Close()
		for i, blob := range [][]byte{a, b} {
			want := layerstream.None
			switch {
			case bytes.HasPrefix(blob, []byte{0x1f, 0x8b}):
				want = layerstream.Gzip
			case bytes.HasPrefix(blob, []byte{0x28, 0xb5, 0x2f, 0xfd}):
				want = layerstream.Zstd
			}
			if got := layerstream.Sniff(blob); got != want {
				t.Fatalf("Sniff(%x) = %v, want %v", blob, got, want)
			}
			out, ok, skip := oracleDecode(t, blob)
			var got []byte
			r, c, err := d.Reset(bufio.NewReader(bytes.NewReader(blob)))
			if err == nil {
				got, err = readMax(r)
			}
			if c != want {
				t.Fatalf("Decoder.Reset of %x: %v, want %v", blob, c, want)
			}
			if err == errTooLong && !skip && ok {
				t.Fatalf("blob %d %x: more than %d bytes out, the oracle read %d", i, blob, maxOut, len(out))
			}
			if skip || err == errTooLong {
				continue
			}
			if ok != (err == nil) && want == layerstream.Gzip {
				// compress/gzip takes reserved FLG bits that RFC 1952 says a decompressor
				// must refuse: where it and the Decoder disagree, GNU gzip decides.
				if gout, gok, decided := gnuGzip(blob); decided {
					out, ok = gout, gok
				}
			}
			if ok != (err == nil) {
				t.Fatalf("blob %d %x (%v): Decoder err %v, the oracle ok %v (read %q)", i, blob, want, err, ok, out)
			}
			if ok && !bytes.Equal(got, out) {
				t.Fatalf("blob %d %x (%v): Decoder read %q, the oracle %q", i, blob, want, got, out)
			}
			rc, err := layerstream.Decompress(bytes.NewReader(blob))
			if err == nil {
				got, err = readMax(rc)
				rc.Close()
			}
			if ok != (err == nil) || ok && !bytes.Equal(got, out) {
				t.Fatalf("blob %d %x (%v): Decompress read %q, %v; the oracle %q, ok %v", i, blob, want, got, err, out, ok)
			}
		}
	})
}
