package img2ext4_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/img2ext4/img2ext4"
	"github.com/img2ext4/img2ext4/internal/ruletest"
	"github.com/img2ext4/img2ext4/internal/tartest"
	"github.com/img2ext4/img2ext4/internal/treesnap"
)

// readImage lists an ext4 image in treesnap's short form: through a read-only loop mount
// when running as root, through debugfs rdump otherwise (which cannot show hard links, so
// the link groups are then dropped from both sides by the caller).
func readImage(t *testing.T, img string) (lines []string, links bool) {
	t.Helper()
	dir := t.TempDir()
	if os.Geteuid() == 0 {
		mnt := filepath.Join(dir, "mnt")
		os.Mkdir(mnt, 0o755)
		if exec.Command("mount", "-o", "ro,loop", img, mnt).Run() == nil {
			defer exec.Command("umount", mnt).Run()
			es, err := treesnap.Dir(mnt, treesnap.Options{NoXattrs: true})
			if err != nil {
				t.Fatal(err)
			}
			return shortWithoutLostFound(es), true
		}
	}
	out := filepath.Join(dir, "rdump")
	os.Mkdir(out, 0o755)
	if b, err := exec.Command(needTool(t, "debugfs"), "-R", "rdump / "+out, img).CombinedOutput(); err != nil {
		t.Fatalf("debugfs rdump: %v\n%s", err, b)
	}
	es, err := treesnap.Dir(out, treesnap.Options{NoXattrs: true})
	if err != nil {
		t.Fatal(err)
	}
	return shortWithoutLostFound(es), false
}

func shortWithoutLostFound(es []treesnap.Entry) []string {
	var out []string
	for _, l := range treesnap.ShortLines(es) {
		if l != "lost+found/" {
			out = append(out, l)
		}
	}
	return out
}

var linkNote = regexp.MustCompile(` \(link [^)]*\)$`)

// TestRulesExt4 runs the layer-merge rule table through the ext4 output: the image must
// pass e2fsck and hold exactly the tree each rule asks for.
func TestRulesExt4(t *testing.T) {
	for _, tc := range ruletest.Cases {
		t.Run(tc.Name, func(t *testing.T) {
			tmp := t.TempDir()
			lay := filepath.Join(tmp, "layout")
			p, err := layout.Write(lay, empty.Index)
			if err != nil {
				t.Fatal(err)
			}
			if err := p.AppendImage(tartest.Image(tc.Tars()...)); err != nil {
				t.Fatal(err)
			}
			img := filepath.Join(tmp, "out.img")
			_, err = img2ext4.Convert(context.Background(), "oci:"+lay, img, img2ext4.WithExt4(img2ext4.Ext4Options{Align: 4096}))
			switch {
			case tc.WantErrText != "":
				if err == nil || !strings.Contains(err.Error(), tc.WantErrText) {
					t.Fatalf("err = %v, want %s", err, tc.WantErrText)
				}
				return
			case tc.WantErr != nil:
				if !errors.Is(err, tc.WantErr) {
					t.Fatalf("err = %v, want %v", err, tc.WantErr)
				}
				if _, serr := os.Stat(img); serr == nil {
					t.Fatal("failed conversion left an image")
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			fsck(t, img)
			got, links := readImage(t, img)
			want := append([]string(nil), tc.Want...)
			if !links {
				for i := range want {
					want[i] = linkNote.ReplaceAllString(want[i], "")
				}
				for i := range got {
					got[i] = linkNote.ReplaceAllString(got[i], "")
				}
			}
			if d := treesnap.Diff(want, got); d != "" {
				t.Errorf("ext4 tree differs (-want +got):\n%s", d)
			}
		})
	}
}
