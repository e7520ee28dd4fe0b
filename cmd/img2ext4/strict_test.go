package main

import (
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/img2ext4/img2ext4/internal/tartest"
)

// TestMetadataWarnings: a layer with a capability for a user namespace's root and an
// attribute ext4 has no namespace for converts with both dropped, counted and named on
// stderr and listed in --progress json; --strict refuses it and leaves no output.
func TestMetadataWarnings(t *testing.T) {
	capv3 := make([]byte, 24)
	binary.LittleEndian.PutUint32(capv3, 0x03000001)
	binary.LittleEndian.PutUint32(capv3[4:], 1<<13)
	binary.LittleEndian.PutUint32(capv3[20:], 1000)
	lay := filepath.Join(t.TempDir(), "layout")
	p, _ := layout.Write(lay, empty.Index)
	img := tartest.Image(tartest.Tar(
		tartest.File("ping", "p", tartest.Mode(0o755), tartest.Xattr("security.capability", string(capv3))),
		tartest.File("odd", "o", tartest.Xattr("btrfs.compression", "zstd"), tartest.Xattr("user.ok", "1")),
	))
	if err := p.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()

	code, _, errOut := runCLI(t, "", "--progress", "none", "--format", "tar", "oci:"+lay, filepath.Join(dir, "a.tar"))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"2 attributes dropped", "--strict", "ping: security.capability dropped: a v3 capability for user-namespace root uid 1000",
		"odd: btrfs.compression dropped"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}

	code, _, errOut = runCLI(t, "", "--progress", "json", "--format", "tar", "oci:"+lay, filepath.Join(dir, "b.tar"))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var attrs []string
	for _, line := range strings.Split(errOut, "\n") {
		var ev struct {
			Phase   string `json:"phase"`
			Warning *struct {
				Path, Attr, Action string
			} `json:"warning"`
		}
		if json.Unmarshal([]byte(line), &ev) == nil && ev.Phase == "warning" && ev.Warning != nil {
			attrs = append(attrs, ev.Warning.Path+" "+ev.Warning.Attr+" "+ev.Warning.Action)
		}
	}
	if strings.Join(attrs, ",") != "ping security.capability dropped,odd btrfs.compression dropped" {
		t.Errorf("--progress json warnings: %q\n%s", attrs, errOut)
	}

	out := filepath.Join(dir, "c.tar")
	code, _, errOut = runCLI(t, "", "-q", "--strict", "--format", "tar", "oci:"+lay, out)
	if code != 1 || !strings.Contains(errOut, "ping") || !strings.Contains(errOut, "security.capability") {
		t.Errorf("--strict: exit %d: %s", code, errOut)
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("--strict left %s", out)
	}
}
