package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// jsonLines decodes every line of s as one JSON object, failing the test on any line that
// is not one: --progress json writes nothing else.
func jsonLines(t *testing.T, s string) []map[string]any {
	t.Helper()
	if s == "" || !strings.HasSuffix(s, "\n") {
		t.Fatalf("output is empty or does not end with a newline: %q", s)
	}
	var objs []map[string]any
	for i, line := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
		var m map[string]any
		dec := json.NewDecoder(strings.NewReader(line))
		if err := dec.Decode(&m); err != nil || dec.More() {
			t.Fatalf("line %d is not one JSON object (%v): %q", i+1, err, line)
		}
		objs = append(objs, m)
	}
	return objs
}

// dumpe2fs returns the numeric fields of dumpe2fs -h for the image at path.
func dumpe2fs(t *testing.T, path string) map[string]float64 {
	t.Helper()
	out, err := exec.Command("dumpe2fs", "-h", path).Output()
	if err != nil {
		t.Fatalf("dumpe2fs -h %s: %v", path, err)
	}
	fields := map[string]float64{}
	for _, line := range strings.Split(string(out), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		if n, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
			fields[k] = n
		}
	}
	return fields
}

// TestProgressJSON runs the command with --progress json on the shipped image: standard
// error holds JSON objects only, progress first, then one result whose numbers dumpe2fs
// confirms; a failure ends with an error object instead, and nothing else is printed.
func TestProgressJSON(t *testing.T) {
	if _, err := exec.LookPath("dumpe2fs"); err != nil {
		t.Skip("dumpe2fs (e2fsprogs) not installed: it is the oracle for the filesystem numbers")
	}
	digest := regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	for _, format := range []string{"ext4", "dir", "tar"} {
		t.Run(format, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			code, stdout, stderr := runCLI(t, "", "--progress", "json", "--format", format, "oci:"+hello, out)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			if stdout != "" {
				t.Errorf("stdout = %q, want nothing", stdout)
			}
			objs := jsonLines(t, stderr)
			phases := map[any]bool{}
			for _, o := range objs[:len(objs)-1] {
				if o["type"] != "progress" {
					t.Errorf("object of type %v before the result: %v", o["type"], o)
				}
				phases[o["phase"]] = true
			}
			for _, p := range []string{"resolve", "apply", "finalize", "done"} {
				if !phases[p] {
					t.Errorf("no %s progress object", p)
				}
			}
			res := objs[len(objs)-1]
			if res["type"] != "result" {
				t.Fatalf("last object %v, want the result", res)
			}
			if s, _ := res["digest"].(string); !digest.MatchString(s) {
				t.Errorf("result digest %v", res["digest"])
			}
			if s, _ := res["platform"].(string); !strings.HasPrefix(s, "linux/") {
				t.Errorf("result platform %v", res["platform"])
			}
			if res["layers"] != 3.0 || res["output"] != out || res["format"] != format {
				t.Errorf("result layers %v, output %v, format %v; want 3, %s, %s", res["layers"], res["output"], res["format"], out, format)
			}
			if e, _ := res["elapsed_ns"].(float64); e <= 0 {
				t.Errorf("result elapsed_ns %v", res["elapsed_ns"])
			}
			fsKeys := []string{"size", "used", "free", "available", "inodes", "inodes_free"}
			if format != "ext4" {
				for _, k := range fsKeys {
					if v, ok := res[k]; ok {
						t.Errorf("%s result has %s = %v", format, k, v)
					}
				}
				return
			}
			for _, k := range fsKeys {
				if _, ok := res[k].(float64); !ok {
					t.Fatalf("ext4 result lacks %s: %v", k, res)
				}
			}
			d := dumpe2fs(t, out)
			bs := d["Block size"]
			st, err := os.Stat(out)
			if err != nil {
				t.Fatal(err)
			}
			free := d["Free blocks"]
			// What df shows to an ordinary user: the free blocks less root's reserve and the
			// kernel's (s_resv_clusters: 2 % of the blocks, at most 4096).
			avail := max(free-d["Reserved block count"]-min(float64(int64(d["Block count"])/50), 4096), 0)
			want := map[string]float64{
				"size":        float64(st.Size()),
				"used":        (d["Block count"] - free) * bs,
				"free":        free * bs,
				"available":   avail * bs,
				"inodes":      d["Inode count"],
				"inodes_free": d["Free inodes"],
			}
			for k, v := range want {
				if res[k] != v {
					t.Errorf("result %s = %v, dumpe2fs says %v", k, res[k], v)
				}
			}
		})
	}
	missing := filepath.Join(t.TempDir(), "no-such-layout")
	failures := []struct {
		name string
		args []string
		code int
		want []string // in the error object's message
	}{
		{"missing layout", []string{"oci:" + missing}, 1, []string{missing}},
		{"platform", []string{"--platform", "linux/s390x", "oci:" + hello}, 1, []string{"s390x", "--platform OS/ARCH"}},
		{"usage", []string{"--jobs", "0", "oci:" + hello}, 2, []string{"--jobs"}},
		{"unknown flag", []string{"--bogus", "oci:" + hello}, 2, []string{"bogus"}},
	}
	for _, tc := range failures {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--progress", "json"}, tc.args...)
			code, _, stderr := runCLI(t, "", append(args, filepath.Join(t.TempDir(), "out"))...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d: %s", code, tc.code, stderr)
			}
			objs := jsonLines(t, stderr)
			last := objs[len(objs)-1]
			if last["type"] != "error" {
				t.Fatalf("last object %v, want an error", last)
			}
			for _, w := range tc.want {
				if s, _ := last["error"].(string); !strings.Contains(s, w) {
					t.Errorf("error %q lacks %q", s, w)
				}
			}
		})
	}
}
