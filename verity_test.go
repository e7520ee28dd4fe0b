package img2ext4_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/img2ext4/img2ext4"
	"github.com/img2ext4/img2ext4/internal/treesnap"
)

const helloRef = "oci:testdata/hello-oci:latest"

var verityRootHash = regexp.MustCompile(`(?m)^Root hash:\s+([0-9a-f]+)$`)

// TestVerity converts the testdata image with a dm-verity hash tree, appended and in a
// separate file, and checks it with cryptsetup's veritysetup: verify accepts the image
// with the reported root hash, format computes the same root hash (and the same bytes)
// with the reported salt, one flipped byte in the filesystem makes verify fail, the
// launch config carries the same report, and a second conversion gives the same bytes.
func TestVerity(t *testing.T) {
	vs, err := exec.LookPath("veritysetup")
	if err != nil {
		t.Skip("veritysetup not installed (Debian package cryptsetup-bin)")
	}
	for _, tc := range []struct {
		name     string
		separate bool
		salt     []byte
	}{
		{name: "appended"},
		{name: "separate file", separate: true},
		{name: "given salt", salt: []byte{0xde, 0xad, 0xbe, 0xef}},
		{name: "no salt", separate: true, salt: []byte{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			convert := func(name string) (string, string, *img2ext4.Result) {
				img, hash := filepath.Join(dir, name+".img"), ""
				v := img2ext4.VerityOptions{Salt: tc.salt}
				if tc.separate {
					hash = filepath.Join(dir, name+".verity")
					v.Out = hash
				}
				res, err := img2ext4.Convert(context.Background(), helloRef, img, img2ext4.WithVerity(v),
					img2ext4.WithLaunchConfig(filepath.Join(dir, name+".json")))
				if err != nil {
					t.Fatal(err)
				}
				if hash == "" {
					hash = img
				}
				return img, hash, res
			}
			img, hash, res := convert("a")
			v := res.Verity
			if v == nil {
				t.Fatal("no Result.Verity")
			}
			fsSize := res.Filesystem.Size
			wantOffset := fsSize
			if tc.separate {
				wantOffset = 0
			}
			if v.HashOffset != wantOffset || v.DataBlocks != uint64(fsSize/4096) || v.HashFile != hash || v.HashAlgorithm != "sha256" {
				t.Errorf("verity result %+v: want hash offset %d, %d data blocks, hash file %s", v, wantOffset, fsSize/4096, hash)
			}
			if tc.salt != nil && (len(tc.salt) == 0 && v.Salt != "-" || len(tc.salt) > 0 && v.Salt != "deadbeef") {
				t.Errorf("salt %s, want the one given (%x)", v.Salt, tc.salt)
			}
			if tc.salt == nil && len(v.Salt) != 64 {
				t.Errorf("derived salt %q, want 32 bytes", v.Salt)
			}
			fi, err := os.Stat(hash)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Size() != v.HashOffset+v.HashSize {
				t.Errorf("hash file is %d bytes, want offset %d + hash area %d", fi.Size(), v.HashOffset, v.HashSize)
			}
			b, err := os.ReadFile(filepath.Join(dir, "a.json"))
			if err != nil {
				t.Fatal(err)
			}
			var lc img2ext4.LaunchConfig
			if err := json.Unmarshal(b, &lc); err != nil {
				t.Fatal(err)
			}
			if lc.Verity == nil || *lc.Verity != *v {
				t.Errorf("launch config has verity %+v, result %+v", lc.Verity, v)
			}
			offsetArg := "--hash-offset=" + strconv.FormatInt(v.HashOffset, 10)
			wantOpen := "veritysetup open " + img + " img2ext4-" + v.RootHash[:12] + " " + hash + " " + v.RootHash
			if !tc.separate {
				wantOpen += " " + offsetArg
			}
			if v.Open != wantOpen {
				t.Errorf("open line\n%s\nwant\n%s", v.Open, wantOpen)
			}

			// veritysetup verify accepts it.
			verify := []string{"verify", img, hash, v.RootHash, offsetArg}
			if b, err := exec.Command(vs, verify...).CombinedOutput(); err != nil {
				t.Fatalf("veritysetup %q: %v\n%s", verify, err, b)
			}
			// veritysetup format with the same salt and parameters computes the same
			// root hash and writes the same hash area.
			data, err := os.ReadFile(img)
			if err != nil {
				t.Fatal(err)
			}
			refData, refHash := filepath.Join(dir, "ref.img"), filepath.Join(dir, "ref.verity")
			if err := os.WriteFile(refData, data[:fsSize], 0o644); err != nil {
				t.Fatal(err)
			}
			format := []string{"format", "--hash=sha256", "--format=1", "--data-block-size=4096", "--hash-block-size=4096",
				"--data-blocks=" + strconv.FormatUint(v.DataBlocks, 10), "--salt=" + v.Salt, "--uuid=" + v.UUID, refData, refHash}
			out, err := exec.Command(vs, format...).CombinedOutput()
			if err != nil {
				t.Fatalf("veritysetup format: %v\n%s", err, out)
			}
			m := verityRootHash.FindSubmatch(out)
			if m == nil || string(m[1]) != v.RootHash {
				t.Fatalf("veritysetup format computes another root hash than %s:\n%s", v.RootHash, out)
			}
			ours, err := os.ReadFile(hash)
			if err != nil {
				t.Fatal(err)
			}
			theirs, err := os.ReadFile(refHash)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ours[v.HashOffset:], theirs) {
				t.Errorf("hash area differs from veritysetup format's")
			}

			// The same conversion again gives the same bytes.
			img2, hash2, res2 := convert("b")
			if res2.Verity.RootHash != v.RootHash || res2.Verity.Salt != v.Salt {
				t.Errorf("second run: root hash %s salt %s, first %s %s", res2.Verity.RootHash, res2.Verity.Salt, v.RootHash, v.Salt)
			}
			for _, p := range [][2]string{{img, img2}, {hash, hash2}} {
				a, _ := os.ReadFile(p[0])
				b, _ := os.ReadFile(p[1])
				if !bytes.Equal(a, b) {
					t.Errorf("%s and %s differ", p[0], p[1])
				}
			}

			// One flipped byte in the filesystem fails verification.
			f, err := os.OpenFile(img, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			_, err = f.WriteAt([]byte{data[1024+56] ^ 0x40}, 1024+56) // the superblock's magic
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				t.Fatal(err)
			}
			if b, err := exec.Command(vs, verify...).CombinedOutput(); err == nil {
				t.Fatalf("veritysetup verify accepts a changed image:\n%s", b)
			}
		})
	}
}

// TestVerityOpen maps the image through the kernel's dm-verity with the reported
// veritysetup open line, mounts it read-only and compares the tree with the dir output.
func TestVerityOpen(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("veritysetup open and mount need root")
	}
	vs, err := exec.LookPath("veritysetup")
	if err != nil {
		t.Skip("veritysetup not installed (Debian package cryptsetup-bin)")
	}
	if f, err := os.OpenFile("/dev/mapper/control", os.O_RDWR, 0); err != nil {
		t.Skipf("no device-mapper in this kernel: %v", err)
	} else {
		f.Close()
	}
	ctx := context.Background()
	dir := t.TempDir()
	rootfs := filepath.Join(dir, "rootfs")
	if _, err := img2ext4.Convert(ctx, helloRef, rootfs, img2ext4.WithFormat(img2ext4.FormatDir)); err != nil {
		t.Fatal(err)
	}
	want, err := treesnap.Dir(rootfs, treesnap.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, separate := range []bool{false, true} {
		t.Run("separate="+strconv.FormatBool(separate), func(t *testing.T) {
			img := filepath.Join(dir, "v.img")
			v := img2ext4.VerityOptions{}
			if separate {
				v.Out = filepath.Join(dir, "v.verity")
			}
			res, err := img2ext4.Convert(ctx, helloRef, img, img2ext4.WithVerity(v))
			if err != nil {
				t.Fatal(err)
			}
			name := "img2ext4-test-" + strconv.Itoa(os.Getpid())
			// Run the reported line, under a name of this test's own.
			line := regexp.MustCompile(` img2ext4-[0-9a-f]{12} `).ReplaceAllString(res.Verity.Open, " "+name+" ")
			line = regexp.MustCompile(`^veritysetup `).ReplaceAllString(line, vs+" ")
			if b, err := exec.Command("sh", "-c", line).CombinedOutput(); err != nil {
				t.Fatalf("%s: %v\n%s", line, err, b)
			}
			defer exec.Command(vs, "close", name).Run()
			mnt := filepath.Join(dir, "mnt")
			os.Mkdir(mnt, 0o755)
			if b, err := exec.Command("mount", "-o", "ro", "/dev/mapper/"+name, mnt).CombinedOutput(); err != nil {
				t.Fatalf("mount the verity device: %v\n%s", err, b)
			}
			defer exec.Command("umount", mnt).Run()
			got, err := treesnap.Dir(mnt, treesnap.Options{})
			if err != nil {
				t.Fatal(err)
			}
			var gotNoLF []treesnap.Entry
			for _, e := range got {
				if e.Path != "lost+found" {
					gotNoLF = append(gotNoLF, e)
				}
			}
			if d := treesnap.Diff(treesnap.Lines(want), treesnap.Lines(gotNoLF)); d != "" {
				t.Errorf("verity device differs from the dir output (-dir +verity):\n%s", d)
			}
		})
	}
}

// TestVerityRefused checks the outputs a hash tree cannot go with, before any download.
func TestVerityRefused(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		out  string
		opts []img2ext4.Option
	}{
		{name: "dir format", out: filepath.Join(dir, "rootfs"), opts: []img2ext4.Option{img2ext4.WithFormat(img2ext4.FormatDir)}},
		{name: "tar format", out: filepath.Join(dir, "x.tar"), opts: []img2ext4.Option{img2ext4.WithFormat(img2ext4.FormatTar)}},
		{name: "hash file is the output", out: filepath.Join(dir, "same.img"), opts: []img2ext4.Option{img2ext4.WithVerity(img2ext4.VerityOptions{Out: filepath.Join(dir, "same.img")})}},
		{name: "hash file in a missing directory", out: filepath.Join(dir, "x.img"), opts: []img2ext4.Option{img2ext4.WithVerity(img2ext4.VerityOptions{Out: filepath.Join(dir, "no", "x.verity")})}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := append([]img2ext4.Option{img2ext4.WithVerity(img2ext4.VerityOptions{})}, tc.opts...)
			// A reference that cannot resolve: a refusal must come before it is tried.
			_, err := img2ext4.Convert(context.Background(), "oci:"+filepath.Join(dir, "missing"), tc.out, opts...)
			if !errors.As(err, new(*img2ext4.CheckError)) {
				t.Fatalf("err = %v, want a *CheckError", err)
			}
			if _, err := os.Stat(tc.out); err == nil {
				t.Errorf("%s was written", tc.out)
			}
		})
	}
}
