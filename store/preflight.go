package store

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// Usage is a directory and the bytes an operation will write below it.
type Usage struct {
	// Dir is an existing directory.
	Dir string
	// Bytes is what will be written below it.
	Bytes int64
	// What names the use in messages: "artifact", "compressed layers", "temporary files".
	What string
}

// Filesystem is one filesystem [Preflight] looked at: the directories on it, its free
// space and what the uses on it need together.
type Filesystem struct {
	// Dirs are the directories given that live on it, in the order given.
	Dirs []string
	// Free is the space available to unprivileged users, in bytes.
	Free int64
	// Need is the sum of the Bytes of the uses on it.
	Need int64
	// Uses are those uses.
	Uses []Usage
}

// ErrNoSpace reports a filesystem with less free space than an operation needs.
var ErrNoSpace = errors.New("store: not enough free space")

// SpaceError reports a filesystem with less free space than the uses on it need. It wraps
// [ErrNoSpace].
type SpaceError struct {
	Filesystem
}

func (e *SpaceError) Error() string {
	var parts []string
	for _, u := range e.Uses {
		parts = append(parts, fmt.Sprintf("%s %s in %s", u.What, formatBytes(u.Bytes), u.Dir))
	}
	return fmt.Sprintf("store: not enough space on the filesystem of %s: %s free, %s needed (%s); free some space or use another directory",
		strings.Join(e.Dirs, ", "), formatBytes(e.Free), formatBytes(e.Need), strings.Join(parts, ", "))
}

// Unwrap returns [ErrNoSpace].
func (e *SpaceError) Unwrap() error { return ErrNoSpace }

// Preflight checks, before any long work, that every directory of uses exists, is
// writable and takes file locks, and that each filesystem has the space the uses on it
// need together: directories on one filesystem (the same device number, as stat reports
// it) add up, so a work directory and a store on the same disk are counted once with the
// sum of both. A host calls it at start-up with the largest build it expects, to learn
// whether builds can run at all; [Store.Build] calls it with each build's estimate. It
// returns the filesystems it looked at, and a *[SpaceError] for the first one short of
// space.
func Preflight(uses ...Usage) ([]Filesystem, error) {
	var fss []Filesystem
	index := map[uint64]int{}
	for _, u := range uses {
		if err := checkLockable(u.Dir); err != nil {
			return nil, err
		}
		var st unix.Stat_t
		if err := unix.Stat(u.Dir, &st); err != nil {
			return nil, fmt.Errorf("store: %s: %w", u.Dir, err)
		}
		var sfs unix.Statfs_t
		if err := unix.Statfs(u.Dir, &sfs); err != nil {
			return nil, fmt.Errorf("store: statfs %s: %w", u.Dir, err)
		}
		i, ok := index[st.Dev]
		if !ok {
			i = len(fss)
			index[st.Dev] = i
			fss = append(fss, Filesystem{Free: int64(sfs.Bavail) * int64(sfs.Bsize)})
		}
		fs := &fss[i]
		if !slices.Contains(fs.Dirs, u.Dir) {
			fs.Dirs = append(fs.Dirs, u.Dir)
		}
		fs.Need += u.Bytes
		fs.Uses = append(fs.Uses, u)
	}
	for _, fs := range fss {
		if fs.Need > fs.Free {
			return fss, &SpaceError{fs}
		}
	}
	return fss, nil
}

// formatBytes writes n in binary units with one decimal.
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
