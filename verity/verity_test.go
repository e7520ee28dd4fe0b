package verity_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/img2ext4/img2ext4/verity"
)

// veritysetup returns the path of cryptsetup's veritysetup, the oracle of these tests,
// or skips the test when it is missing.
func veritysetup(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("veritysetup")
	if err != nil {
		t.Skip("veritysetup not installed (Debian package cryptsetup-bin)")
	}
	return p
}

// randomData returns n blocks of deterministic pseudo-random bytes.
func randomData(n int) []byte {
	r := rand.NewChaCha8([32]byte{'v', 'e', 'r', 'i', 't', 'y'})
	b := make([]byte, n*verity.BlockSize)
	r.Read(b)
	return b
}

var rootHashLine = regexp.MustCompile(`(?m)^Root hash:\s+([0-9a-f]+)$`)

func run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}

// TestWriteMatchesVeritysetup checks, for data of one block, of one hash block's worth,
// and of two and three levels, appended and in a separate file, with and without a
// superblock, that veritysetup format computes the same root hash and the same bytes
// of hash area, that veritysetup verify accepts the tree, and that it rejects the data
// after one byte changes.
func TestWriteMatchesVeritysetup(t *testing.T) {
	vs := veritysetup(t)
	salt, _ := hex.DecodeString("5eed0123456789abcdef")
	uuid := "0b5c7a1e-3d2f-4e6a-9b8c-7d6e5f4a3b2c"
	u, err := verity.ParseUUID(uuid)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name         string
		blocks       int
		appended     bool
		noSuperblock bool
		salt         []byte
	}{
		{name: "one block", blocks: 1, salt: salt},
		{name: "two blocks", blocks: 2, salt: salt},
		{name: "one hash block of data", blocks: 128, salt: salt},
		{name: "two levels", blocks: 129, salt: salt, appended: true},
		{name: "two full levels", blocks: 128 * 128, salt: salt},
		{name: "three levels appended", blocks: 128*128 + 1, salt: salt, appended: true},
		{name: "no salt", blocks: 300},
		{name: "no superblock", blocks: 300, salt: salt, noSuperblock: true},
		{name: "no superblock appended", blocks: 129, salt: salt, noSuperblock: true, appended: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			data := randomData(tc.blocks)
			dataFile, hashFile := filepath.Join(dir, "data"), filepath.Join(dir, "hash")
			if err := os.WriteFile(dataFile, data, 0o644); err != nil {
				t.Fatal(err)
			}
			out := hashFile
			var off int64
			if tc.appended {
				out, off = dataFile, int64(len(data))
			}
			f, err := os.OpenFile(out, os.O_RDWR|os.O_CREATE, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			opts := []verity.Option{verity.WithSalt(tc.salt), verity.WithUUID(u)}
			if tc.noSuperblock {
				opts = append(opts, verity.WithoutSuperblock())
			}
			tree, err := verity.Write(context.Background(), f, off, bytes.NewReader(data), int64(len(data)), opts...)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				t.Fatal(err)
			}
			if tree.DataBlocks != uint64(tc.blocks) || tree.HashOffset != off {
				t.Errorf("tree has %d data blocks at hash offset %d, want %d and %d", tree.DataBlocks, tree.HashOffset, tc.blocks, off)
			}
			if !tc.noSuperblock && tree.HashSize != verity.HashSize(int64(len(data))) {
				t.Errorf("HashSize = %d, tree.HashSize = %d", verity.HashSize(int64(len(data))), tree.HashSize)
			}

			// veritysetup format with the same parameters, into files of its own.
			refData, refHash := filepath.Join(dir, "refdata"), filepath.Join(dir, "refhash")
			if err := os.WriteFile(refData, data, 0o644); err != nil {
				t.Fatal(err)
			}
			refOut := refHash
			args := []string{"format", "--hash=sha256", "--format=1", "--data-block-size=4096", "--hash-block-size=4096",
				"--data-blocks=" + strconv.Itoa(tc.blocks), "--salt=" + tree.SaltHex()}
			if tc.appended {
				refOut = refData
				args = append(args, "--hash-offset="+strconv.FormatInt(off, 10))
			}
			if tc.noSuperblock {
				args = append(args, "--no-superblock")
			} else {
				args = append(args, "--uuid="+uuid)
			}
			outText, err := run(t, vs, append(args, refData, refOut)...)
			if err != nil {
				t.Fatalf("veritysetup format: %v\n%s", err, outText)
			}
			m := rootHashLine.FindStringSubmatch(outText)
			if m == nil {
				t.Fatalf("no root hash in veritysetup's output:\n%s", outText)
			}
			if got := tree.RootHashHex(); got != m[1] {
				t.Errorf("root hash %s, veritysetup format computes %s", got, m[1])
			}
			ours, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			theirs, err := os.ReadFile(refOut)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ours, theirs) {
				t.Errorf("hash file of %d bytes differs from veritysetup's of %d bytes", len(ours), len(theirs))
			}
			if int64(len(ours))-off != tree.HashSize {
				t.Errorf("wrote %d bytes of hash area, tree says %d", int64(len(ours))-off, tree.HashSize)
			}

			// The root hash and options of the open line, for verify.
			verify := append([]string{"verify", dataFile, out}, tree.OpenArgs(dataFile, "unused", out)[5:]...)
			if outText, err := run(t, vs, verify...); err != nil {
				t.Fatalf("veritysetup %q rejects the tree: %v\n%s", verify, err, outText)
			}
			// One flipped byte in the last data block must fail verification.
			bad := bytes.Clone(data)
			bad[len(bad)-100] ^= 0x01
			df, err := os.OpenFile(dataFile, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			_, err = df.WriteAt(bad, 0)
			if cerr := df.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				t.Fatal(err)
			}
			if outText, err := run(t, vs, verify...); err == nil {
				t.Fatalf("veritysetup verify accepts data with a flipped byte:\n%s", outText)
			}
		})
	}
}

func TestWriteRefuses(t *testing.T) {
	data := randomData(2)
	for _, tc := range []struct {
		name   string
		size   int64
		offset int64
		opts   []verity.Option
	}{
		{name: "empty", size: 0},
		{name: "partial block", size: 5000},
		{name: "unaligned offset", size: 8192, offset: 100},
		{name: "long salt", size: 8192, opts: []verity.Option{verity.WithSalt(make([]byte, 257))}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := os.Create(filepath.Join(t.TempDir(), "hash"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := verity.Write(context.Background(), f, tc.offset, bytes.NewReader(data), tc.size, tc.opts...); err == nil {
				t.Fatal("no error")
			}
		})
	}
	// Data shorter than said is a read error, not a tree.
	f, err := os.Create(filepath.Join(t.TempDir(), "hash"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := verity.Write(context.Background(), f, 0, bytes.NewReader(data), 3*verity.BlockSize); err == nil {
		t.Fatal("short data: no error")
	}
}

// BenchmarkWrite measures the tree of 64 MiB of data written to a file.
func BenchmarkWrite(b *testing.B) {
	data := randomData(16384)
	f, err := os.Create(filepath.Join(b.TempDir(), "hash"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := verity.Write(context.Background(), f, 0, bytes.NewReader(data), int64(len(data)), verity.WithSalt([]byte("salt"))); err != nil {
			b.Fatal(err)
		}
	}
}
