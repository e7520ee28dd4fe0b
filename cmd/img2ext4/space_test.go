package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// superblock returns the fields dumpe2fs -h prints.
func superblock(t *testing.T, img string) map[string]int64 {
	t.Helper()
	out, err := exec.Command("dumpe2fs", "-h", img).Output()
	if err != nil {
		t.Fatalf("dumpe2fs: %v", err)
	}
	m := map[string]int64{}
	for _, l := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
				m[strings.TrimSpace(k)] = n
			}
		}
	}
	return m
}

// TestFreeAndReserved checks the ext4 sizing flags: the default leaves
// 64 MiB available to ordinary users, --free 0 the smallest writable
// image, --reserved N% reserves blocks for root, and a --size too small
// names the size that fits.
func TestFreeAndReserved(t *testing.T) {
	if _, err := exec.LookPath("dumpe2fs"); err != nil {
		t.Skip("dumpe2fs not found")
	}
	dir := t.TempDir()
	avail := func(sb map[string]int64) int64 {
		return (sb["Free blocks"] - sb["Reserved block count"] - min(sb["Block count"]/50, 4096)) * 4096
	}
	for _, tc := range []struct {
		name          string
		args          []string
		code          int
		minAv, maxAv  int64
		reservedShare int64
		msg           string
	}{
		{"default", nil, 0, 64 << 20, 66 << 20, 0, ""},
		{"free-0", []string{"--free", "0", "--align", "4096"}, 0, 1 << 20, 2 << 20, 0, ""},
		{"free-32M", []string{"--free", "32M", "--align", "4096"}, 0, 32 << 20, 33 << 20, 0, ""},
		{"reserved", []string{"--reserved", "5%"}, 0, 64 << 20, 66 << 20, 5, ""},
		{"reserved-too-much", []string{"--reserved", "60%"}, 2, 0, 0, 0, "percentage"},
		{"size-too-small", []string{"--size", "1M"}, 1, 0, 0, 0, "needs an image of at least"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(dir, tc.name+".img")
			args := append(append([]string{"-q"}, tc.args...), "oci:"+hello, out)
			code, _, errOut := runCLI(t, "", args...)
			if code != tc.code || !strings.Contains(errOut, tc.msg) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, errOut, tc.code, tc.msg)
			}
			if code != 0 {
				if _, err := os.Stat(out); err == nil {
					t.Error("a failed conversion left its output")
				}
				return
			}
			sb := superblock(t, out)
			if a := avail(sb); a < tc.minAv || a >= tc.maxAv {
				t.Errorf("%d bytes available, want [%d, %d)", a, tc.minAv, tc.maxAv)
			}
			if sb["Reserved block count"] != sb["Block count"]*tc.reservedShare/100 {
				t.Errorf("%d of %d blocks reserved, want %d %%", sb["Reserved block count"], sb["Block count"], tc.reservedShare)
			}
		})
	}
}
