package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestVerityCLI runs --verity and --verity-out with --progress json and --config-out:
// the result object and the launch config report the same tree, veritysetup verify
// accepts it, and the flags that cannot work are usage errors.
func TestVerityCLI(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--verity-salt", "00", "oci:" + hello, filepath.Join(dir, "x.img")}, "--verity-salt needs --verity"},
		{[]string{"--verity", "--verity-salt", "xyz", "oci:" + hello, filepath.Join(dir, "x.img")}, "--verity-salt"},
		{[]string{"--verity", "--format", "dir", "oci:" + hello, filepath.Join(dir, "x")}, "only apply to --format ext4"},
		{[]string{"--verity-out", filepath.Join(dir, "x.img"), "oci:" + hello, filepath.Join(dir, "x.img")}, "is the output itself"},
	} {
		code, _, stderr := runCLI(t, "", tc.args...)
		if code != exitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want %d and %q", tc.args, code, stderr, exitUsage, tc.want)
		}
	}

	vs, err := exec.LookPath("veritysetup")
	if err != nil {
		t.Skip("veritysetup not installed (Debian package cryptsetup-bin)")
	}
	for _, separate := range []bool{false, true} {
		t.Run("separate="+strconv.FormatBool(separate), func(t *testing.T) {
			img, cfg, hash := filepath.Join(dir, "v.img"), filepath.Join(dir, "v.json"), filepath.Join(dir, "v.img")
			args := []string{"--progress", "json", "--config-out", cfg, "--verity-salt", "c0ffee"}
			if separate {
				hash = filepath.Join(dir, "v.verity")
				args = append(args, "--verity-out", hash)
			} else {
				args = append(args, "--verity")
			}
			code, _, stderr := runCLI(t, "", append(args, "oci:"+hello, img)...)
			if code != exitOK {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			objs := jsonLines(t, stderr)
			res := objs[len(objs)-1]
			v, ok := res["verity"].(map[string]any)
			if res["type"] != "result" || !ok {
				t.Fatalf("last object has no verity: %v", res)
			}
			b, err := os.ReadFile(cfg)
			if err != nil {
				t.Fatal(err)
			}
			var lc struct{ Verity map[string]any }
			if err := json.Unmarshal(b, &lc); err != nil {
				t.Fatal(err)
			}
			if lc.Verity["open"] != v["open"] || lc.Verity["root_hash"] != v["root_hash"] {
				t.Errorf("config-out has %v, the result %v", lc.Verity, v)
			}
			off := int64(v["hash_offset"].(float64))
			if v["salt"] != "c0ffee" || (off == 0) != separate || v["hash_file"] != hash {
				t.Errorf("result verity %v: want salt c0ffee, hash file %s", v, hash)
			}
			if separate == false && off != int64(res["size"].(float64)) {
				t.Errorf("hash offset %d, filesystem size %v", off, res["size"])
			}
			verify := []string{"verify", img, hash, v["root_hash"].(string), "--hash-offset=" + strconv.FormatInt(off, 10)}
			if b, err := exec.Command(vs, verify...).CombinedOutput(); err != nil {
				t.Fatalf("veritysetup %q: %v\n%s", verify, err, b)
			}
		})
	}
}

// TestVerityBlockDevice checks that a hash tree into a block device is a usage error and
// leaves the device as it was.
func TestVerityBlockDevice(t *testing.T) {
	needRootTools(t, "losetup")
	dir := t.TempDir()
	file := filepath.Join(dir, "disk")
	if err := os.WriteFile(file, []byte("untouched"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(file, 64<<20); err != nil {
		t.Fatal(err)
	}
	dev := loopDevice(t, file, dir, false)
	for _, flag := range [][]string{{"--verity"}, {"--verity-out", filepath.Join(dir, "v.verity")}} {
		code, _, stderr := runCLI(t, "", append(flag, "oci:"+hello, dev)...)
		if code != exitUsage || !strings.Contains(stderr, "block device") {
			t.Errorf("%s into a block device: exit %d, %q; want a usage error", flag[0], code, stderr)
		}
	}
	if b, err := os.ReadFile(file); err != nil || string(b[:9]) != "untouched" {
		t.Errorf("the device was written (%v)", err)
	}
}
