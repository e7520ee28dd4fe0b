package img2ext4_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
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
// when running as root, through debugfs otherwise: rdump for files, directories and
// symlinks (it cannot show hard links, so the link groups are then dropped from both sides
// by the caller), "ls -p" and "stat" for the device nodes, FIFOs and sockets rdump skips.
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
	debugfs := needTool(t, "debugfs")
	out := filepath.Join(dir, "rdump")
	os.Mkdir(out, 0o755)
	if b, err := exec.Command(debugfs, "-R", "rdump / "+out, img).CombinedOutput(); err != nil {
		t.Fatalf("debugfs rdump: %v\n%s", err, b)
	}
	es, err := treesnap.Dir(out, treesnap.Options{NoXattrs: true})
	if err != nil {
		t.Fatal(err)
	}
	dirs := []string{""}
	for _, e := range es {
		if e.Type == 'd' {
			dirs = append(dirs, e.Path)
		}
	}
	es = append(es, specialFiles(t, debugfs, img, dirs)...)
	slices.SortFunc(es, func(a, b treesnap.Entry) int { return strings.Compare(a.Path, b.Path) })
	return shortWithoutLostFound(es), false
}

// debugfsRun runs debugfs's commands on img in one process and returns the output of each.
func debugfsRun(t *testing.T, debugfs, img string, cmds []string) []string {
	t.Helper()
	script := filepath.Join(t.TempDir(), "cmds")
	if err := os.WriteFile(script, []byte(strings.Join(cmds, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(debugfs, "-f", script, img)
	cmd.Env = append(os.Environ(), "DEBUGFS_PAGER=__none__", "PAGER=__none__")
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("debugfs: %v", err)
	}
	// debugfs -f echoes each command as "debugfs: CMD" before its output.
	outs := make([]string, len(cmds))
	i := -1
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if i+1 < len(cmds) && strings.TrimSpace(line) == "debugfs: "+cmds[i+1] {
			i++
			continue
		}
		if i >= 0 {
			outs[i] += line
		}
	}
	if i != len(cmds)-1 {
		t.Fatalf("debugfs ran %d of %d commands:\n%s", i+1, len(cmds), b)
	}
	return outs
}

var deviceNumber = regexp.MustCompile(`Device major/minor number: (\d+):(\d+)`)

// specialFiles finds the device nodes, FIFOs and sockets in the directories dirs of an
// ext4 image: their paths, types and device numbers.
func specialFiles(t *testing.T, debugfs, img string, dirs []string) []treesnap.Entry {
	t.Helper()
	var cmds []string
	for _, d := range dirs {
		cmds = append(cmds, fmt.Sprintf("ls -p %q", "/"+d))
	}
	var out []treesnap.Entry
	var stats []string
	for i, listing := range debugfsRun(t, debugfs, img, cmds) {
		// ls -p prints /INODE/MODE/UID/GID/NAME/SIZE/ per entry.
		for _, line := range strings.Split(listing, "\n") {
			f := strings.Split(line, "/")
			if len(f) != 8 || f[5] == "." || f[5] == ".." {
				continue
			}
			mode, err := strconv.ParseUint(f[2], 8, 32)
			if err != nil {
				t.Fatalf("debugfs ls -p: %q", line)
			}
			e := treesnap.Entry{Path: path.Join(dirs[i], f[5])}
			switch mode & 0o170000 {
			case 0o020000:
				e.Type = 'c'
			case 0o060000:
				e.Type = 'b'
			case 0o010000:
				e.Type = 'p'
			case 0o140000:
				e.Type = 's'
			default:
				continue
			}
			out = append(out, e)
			stats = append(stats, fmt.Sprintf("stat %q", "/"+e.Path))
		}
	}
	if len(out) == 0 {
		return nil
	}
	for i, st := range debugfsRun(t, debugfs, img, stats) {
		if out[i].Type != 'c' && out[i].Type != 'b' {
			continue
		}
		m := deviceNumber.FindStringSubmatch(st)
		if m == nil {
			t.Fatalf("debugfs %s: no device number in\n%s", stats[i], st)
		}
		major, _ := strconv.ParseUint(m[1], 10, 32)
		minor, _ := strconv.ParseUint(m[2], 10, 32)
		out[i].Major, out[i].Minor = uint32(major), uint32(minor)
	}
	return out
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
	needTool(t, "e2fsck")
	if os.Geteuid() != 0 {
		needTool(t, "debugfs") // reads the images back without a loop mount
	}
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
