package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/img2ext4/img2ext4/artifact"
	"github.com/img2ext4/img2ext4/internal/registrytest"
	"github.com/img2ext4/img2ext4/internal/trusttest"
)

// convertHello converts the test image with a dm-verity tree appended and returns the
// image's path and root hash (from the JSON result).
func convertHello(t *testing.T, dir string) (img, rootHash string) {
	t.Helper()
	img = filepath.Join(dir, "hello.img")
	code, _, stderr := runCLI(t, "", "--progress", "json", "--verity", "oci:"+hello, img)
	if code != exitOK {
		t.Fatalf("convert: exit %d: %s", code, stderr)
	}
	objs := jsonLines(t, stderr)
	v, _ := objs[len(objs)-1]["verity"].(map[string]any)
	rootHash, _ = v["root_hash"].(string)
	if rootHash == "" {
		t.Fatalf("no root hash in %v", objs[len(objs)-1])
	}
	return img, rootHash
}

// TestPushPullCLI pushes a converted image (with a verity tree) to docker-registry with
// the source layout as subject, pulls it back by tag and by the printed digest, and
// finds it among the source manifest's referrers with the verity root hash annotated.
func TestPushPullCLI(t *testing.T) {
	reg := registrytest.Distribution(t)
	dir := t.TempDir()
	img, rootHash := convertHello(t, dir)
	repo := reg.Host + "/hello"
	code, stdout, stderr := runCLI(t, "", "push", "--subject", "oci:"+hello, "--annotation", "purpose=test", img, repo+":v1")
	if code != exitOK {
		t.Fatalf("push: exit %d: %s", code, stderr)
	}
	digestRef := strings.TrimSpace(stdout)
	if !strings.HasPrefix(digestRef, repo+"@sha256:") || !strings.Contains(stderr, "Pushed ") {
		t.Fatalf("push printed %q and %q", stdout, stderr)
	}
	want, _ := os.ReadFile(img)
	for _, ref := range []string{repo + ":v1", digestRef} {
		out := filepath.Join(dir, "pulled-"+strings.ReplaceAll(filepath.Base(ref), ":", "-"))
		code, _, stderr := runCLI(t, "", "pull", ref, out)
		if code != exitOK {
			t.Fatalf("pull %s: exit %d: %s", ref, code, stderr)
		}
		if got, _ := os.ReadFile(out); !bytes.Equal(got, want) {
			t.Fatalf("pulled %s differs from the pushed image", ref)
		}
		if !strings.Contains(stderr, "Verity root hash "+rootHash) {
			t.Errorf("pull summary %q lacks the root hash %s", stderr, rootHash)
		}
	}
	a, err := artifact.Open(context.Background(), digestRef)
	if err != nil {
		t.Fatal(err)
	}
	ann := a.Descriptor.Annotations
	found, err := artifact.Find(context.Background(), repo, mustHash(t, ann[artifact.AnnotationSourceDigest]), map[string]string{"purpose": "test"})
	if err != nil || len(found) != 1 || found[0].Digest != a.Descriptor.Digest {
		t.Fatalf("referrers of the source: %v, %v", found, err)
	}
	if ann[artifact.AnnotationVerityRootHash] != rootHash || ann[artifact.AnnotationSourceRef] != "oci:"+hello || ann[artifact.AnnotationPlatform] == "" {
		t.Errorf("annotations %v: want root hash %s, the source and its platform", ann, rootHash)
	}
}

// TestPullCorruptCLI corrupts a chunk in the registry's storage: pull fails, the file
// already at OUTPUT is left as it was and no temporary file remains.
func TestPullCorruptCLI(t *testing.T) {
	reg := registrytest.Distribution(t)
	dir := t.TempDir()
	img, _ := convertHello(t, dir)
	repo := reg.Host + "/hello"
	p, err := artifact.PushFile(context.Background(), img, repo+":v1")
	if err != nil {
		t.Fatal(err)
	}
	blob := reg.BlobPath(p.Index.Blobs()[0].Digest.Hex)
	b, _ := os.ReadFile(blob)
	b[len(b)-3] ^= 1
	if err := os.WriteFile(blob, b, 0o644); err != nil {
		t.Fatal(err)
	}
	outDir := filepath.Join(dir, "out")
	os.Mkdir(outDir, 0o755)
	out := filepath.Join(outDir, "image")
	if err := os.WriteFile(out, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCLI(t, "", "pull", repo+":v1", out)
	if code != exitFailure || !strings.Contains(stderr, "corrupt") {
		t.Fatalf("pull of a corrupt chunk: exit %d: %s", code, stderr)
	}
	if got, _ := os.ReadFile(out); string(got) != "old" {
		t.Errorf("OUTPUT was replaced")
	}
	if names, _ := filepath.Glob(filepath.Join(outDir, ".*")); len(names) > 0 {
		t.Errorf("temporary files left: %v", names)
	}
	os.Remove(out)
	if code, _, _ := runCLI(t, "", "pull", repo+":v1", out); code != exitFailure {
		t.Fatalf("pull of a corrupt chunk to a new file: exit %d", code)
	}
	if _, err := os.Lstat(out); err == nil {
		t.Errorf("OUTPUT appeared")
	}
}

// TestPullBlockDevice pulls into a loop device larger than the image, filled with 0xff:
// the image lands at its start (zeros where it has holes), e2fsck accepts the device,
// and the bytes past the image are untouched.
func TestPullBlockDevice(t *testing.T) {
	needRootTools(t, "losetup", "e2fsck")
	reg := registrytest.GGCR(t)
	dir := t.TempDir()
	img, _ := convertHello(t, dir)
	p, err := artifact.PushFile(context.Background(), img, reg.Host+"/hello:v1")
	if err != nil {
		t.Fatal(err)
	}
	size := p.Index.Size
	file := filepath.Join(dir, "disk")
	if err := os.WriteFile(file, bytes.Repeat([]byte{0xff}, int(size)+8<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	dev := loopDevice(t, file, dir, false)
	code, _, stderr := runCLI(t, "", "pull", reg.Host+"/hello:v1", dev)
	if code != exitOK {
		t.Fatalf("pull into %s: exit %d: %s", dev, code, stderr)
	}
	got, _ := os.ReadFile(file)
	want, _ := os.ReadFile(img)
	if !bytes.Equal(got[:size], want) {
		t.Error("the device does not hold the image")
	}
	if !bytes.Equal(got[size:], bytes.Repeat([]byte{0xff}, 8<<20)) {
		t.Error("bytes past the image were written")
	}
	fsSize := p.Descriptor.Annotations[artifact.AnnotationFilesystemSize]
	if out, err := exec.Command("e2fsck", "-fn", dev).CombinedOutput(); err != nil {
		t.Errorf("e2fsck -fn %s (filesystem %s bytes): %v\n%s", dev, fsSize, err, out)
	}
	// A device smaller than the image is refused before anything is written.
	small := filepath.Join(dir, "small")
	os.WriteFile(small, bytes.Repeat([]byte{0xee}, 1<<20), 0o644)
	code, _, stderr = runCLI(t, "", "pull", reg.Host+"/hello:v1", loopDevice(t, small, dir, false))
	if code != exitUsage || !strings.Contains(stderr, "larger than the device") {
		t.Errorf("pull into a small device: exit %d: %s", code, stderr)
	}
}

// TestArtifactUsage checks the subcommands' usage errors.
func TestArtifactUsage(t *testing.T) {
	dir := t.TempDir()
	notExt4 := filepath.Join(dir, "text")
	os.WriteFile(notExt4, bytes.Repeat([]byte("text"), 2048), 0o644)
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"push"}, 2, "want 2 arguments"},
		{[]string{"push", "a", "Not/A:Valid:Ref"}, 2, "parse reference"},
		{[]string{"push", "--annotation", "novalue", "a", "127.0.0.1:1/r"}, 2, "KEY=VALUE"},
		{[]string{"push", "--jobs", "0", "a", "127.0.0.1:1/r"}, 2, "--jobs 0"},
		{[]string{"push", filepath.Join(dir, "missing"), "127.0.0.1:1/r"}, 1, "no such file"},
		{[]string{"push", notExt4, "127.0.0.1:1/r"}, 1, "not an ext4 image artifact"},
		{[]string{"push", notExt4, "127.0.0.1:1/r@sha256:" + strings.Repeat("0", 64)}, 2, "not a digest"},
		{[]string{"pull", "127.0.0.1:1/r"}, 2, "want 2 arguments"},
		{[]string{"pull", "--username", "u", "127.0.0.1:1/r", "out"}, 2, "--password-stdin"},
		{[]string{"pull", "127.0.0.1:1/r", dir}, 2, "is a directory"},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, _, stderr := runCLI(t, "", tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, stderr, tc.code, tc.want)
			}
		})
	}
	if code, stdout, _ := runCLI(t, "", "push", "--help"); code != exitOK || !strings.Contains(stdout, artifact.ArtifactType) {
		t.Errorf("push --help: exit %d, %q", code, stdout)
	}
}

func mustHash(t *testing.T, s string) v1.Hash {
	t.Helper()
	h, err := v1.NewHash(s)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestCacheCLI converts with --cache-to, then again with --cache-from into another file:
// the second run pulls instead of converting (it says so) and writes the same bytes.
func TestCacheCLI(t *testing.T) {
	reg := registrytest.GGCR(t)
	dir := t.TempDir()
	cache := reg.Host + "/cache"
	first, second := filepath.Join(dir, "first.img"), filepath.Join(dir, "second.img")
	code, _, stderr := runCLI(t, "", "--progress", "none", "--cache-from", cache, "--cache-to", cache+":hello", "oci:"+hello, first)
	if code != exitOK || !strings.Contains(stderr, "Cache miss: ") || !strings.Contains(stderr, "Cache: pushed "+cache+"@sha256:") {
		t.Fatalf("first conversion: exit %d: %s", code, stderr)
	}
	code, _, stderr = runCLI(t, "", "--progress", "none", "--cache-from", cache, "oci:"+hello, second)
	if code != exitOK || !strings.Contains(stderr, "Cache hit: pulled "+cache+"@sha256:") {
		t.Fatalf("second conversion: exit %d: %s", code, stderr)
	}
	// The JSON results of a miss and of a hit into the same file differ only in what the
	// cache did and the time taken: the layers, warnings and CA report come with the hit.
	third := filepath.Join(dir, "third.img")
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, trusttest.NewPKI(t).Corp.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	results := map[bool]map[string]any{}
	for _, hit := range []bool{false, true} {
		args := []string{"--progress", "json", "--ca-cert", ca, "--cache-from", cache, "--cache-to", cache + ":ca", "oci:" + hello, third}
		code, _, stderr = runCLI(t, "", args...)
		objs := jsonLines(t, stderr)
		res := objs[len(objs)-1]
		if c, _ := res["cache"].(map[string]any); code != exitOK || (c["hit"] != nil) != hit || c["key"] == nil {
			t.Fatalf("JSON result, want hit %v: exit %d, %v", hit, code, res)
		}
		delete(res, "cache")
		delete(res, "elapsed_ns")
		results[hit] = res
	}
	if !reflect.DeepEqual(results[false], results[true]) || results[true]["ca_certs"] == nil || results[true]["layers"] == float64(0) {
		t.Errorf("JSON result of a hit:\n%v\nof the miss:\n%v", results[true], results[false])
	}
	a, _ := os.ReadFile(first)
	b, _ := os.ReadFile(second)
	if !bytes.Equal(a, b) {
		t.Fatal("the cached image differs")
	}
	if code, _, stderr := runCLI(t, "", "--format", "dir", "--cache-to", cache, "oci:"+hello, filepath.Join(dir, "tree")); code != exitUsage || !strings.Contains(stderr, "--cache-to only apply to --format ext4") {
		t.Errorf("--cache-to with --format dir: exit %d: %s", code, stderr)
	}
}
