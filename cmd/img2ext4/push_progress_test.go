package main

import (
	"strings"
	"testing"

	"github.com/img2ext4/img2ext4/artifact"
	"github.com/img2ext4/img2ext4/internal/registrytest"
)

// TestPushProgressJSON pushes with --progress json to both registries, twice: standard
// error holds JSON objects only, upload progress, then one result object with the chunk
// counts, the digest printed on standard output and how the subject's referrers list the
// artifact (the API on go-containerregistry's registry, the fallback tag on
// docker-registry); the second push uploads nothing and finds every blob present. A
// usage error comes as a JSON error object.
func TestPushProgressJSON(t *testing.T) {
	dir := t.TempDir()
	img, _ := convertHello(t, dir)
	for _, tc := range []struct {
		name      string
		start     func(testing.TB) *registrytest.Registry
		referrers string
	}{
		{"ggcr", registrytest.GGCR, artifact.ReferrersAPI},
		{"distribution", registrytest.Distribution, artifact.ReferrersTag},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := tc.start(t)
			repo := reg.Host + "/hello"
			for i, wantUploaded := range []bool{true, false} {
				code, stdout, stderr := runCLI(t, "", "push", "--progress", "json", "--subject", "oci:"+hello, img, repo+":v1")
				if code != exitOK {
					t.Fatalf("push %d: exit %d: %s", i+1, code, stderr)
				}
				objs := jsonLines(t, stderr)
				progressed := false
				for _, o := range objs[:len(objs)-1] {
					if o["type"] != "progress" || o["phase"] != "upload" {
						t.Fatalf("push %d: want upload progress objects before the result, got %v", i+1, o)
					}
					progressed = true
				}
				res := objs[len(objs)-1]
				if !progressed || res["type"] != "result" {
					t.Fatalf("push %d: want progress and a result last: %v", i+1, objs)
				}
				num := func(k string) int {
					f, ok := res[k].(float64)
					if !ok {
						t.Fatalf("push %d: result %v lacks %q", i+1, res, k)
					}
					return int(f)
				}
				chunks, holes, blobs, uploaded, present := num("chunks"), num("holes"), num("blobs"), num("uploaded"), num("present")
				if chunks <= holes || blobs == 0 || uploaded+present != blobs || num("size") <= 0 {
					t.Errorf("push %d: inconsistent counts in %v", i+1, res)
				}
				if wantUploaded && (uploaded != blobs || num("uploaded_bytes") == 0) || !wantUploaded && (uploaded != 0 || present != blobs) {
					t.Errorf("push %d: uploaded %d and present %d of %d blobs", i+1, uploaded, present, blobs)
				}
				if ref := strings.TrimSpace(stdout); res["ref"] != ref || !strings.HasSuffix(ref, "@"+res["digest"].(string)) || res["tag"] != "v1" {
					t.Errorf("push %d: result ref %v, digest %v, tag %v; printed %q", i+1, res["ref"], res["digest"], res["tag"], ref)
				}
				if res["referrers"] != tc.referrers || !strings.HasPrefix(res["subject"].(string), "sha256:") {
					t.Errorf("push %d: referrers %v of subject %v, want %q", i+1, res["referrers"], res["subject"], tc.referrers)
				}
			}
		})
	}
	code, _, stderr := runCLI(t, "", "push", "--progress", "json", "--jobs", "0", img, "127.0.0.1:1/x")
	objs := jsonLines(t, stderr)
	if code != exitUsage || len(objs) != 1 || objs[0]["type"] != "error" || !strings.Contains(objs[0]["error"].(string), "--jobs") {
		t.Errorf("usage error with --progress json: exit %d: %v", code, objs)
	}
}
