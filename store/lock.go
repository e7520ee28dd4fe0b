package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// lockPath is the lock file of the key named hex: in the primary root, whichever root
// holds the artifact, so that all roots share one lock per key.
func (s *Store) lockPath(hex string) string {
	return filepath.Join(s.roots[0], locksDir, hex+".lock")
}

// lock takes key's lock, waiting for another holder up to the store's wait or until ctx
// ends, and returns the function that releases it.
func (s *Store) lock(ctx context.Context, key Key) (func(), error) {
	path := s.lockPath(key.Hex())
	deadline := time.Now().Add(s.o.wait)
	delay := 5 * time.Millisecond
	for {
		f, err := tryLock(path)
		if err != nil {
			return nil, err
		}
		if f != nil {
			return func() { f.Close() }, nil
		}
		if !time.Now().Before(deadline) {
			return nil, fmt.Errorf("%w %s (waited %s; its lock is %s)", ErrWaitTimeout, key, s.o.wait, path)
		}
		t := time.NewTimer(min(delay, time.Until(deadline)))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, context.Cause(ctx)
		case <-t.C:
		}
		delay = min(2*delay, 200*time.Millisecond)
	}
}

// tryLock takes the exclusive lock of the file at path, creating it, without waiting: it
// returns the open, locked file, or nil when another holds the lock. A lock file is
// removed only by its holder, so a file locked after its removal is noticed (its inode is
// no longer the path's) and the lock taken again on the new file.
func tryLock(path string) (*os.File, error) {
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, fmt.Errorf("store: open lock %s: %w", path, err)
		}
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, nil
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("store: lock %s: %w (the store needs a filesystem with flock)", path, err)
		}
		var held, named unix.Stat_t
		if unix.Fstat(int(f.Fd()), &held) == nil && unix.Stat(path, &named) == nil && held.Ino == named.Ino && held.Dev == named.Dev {
			return f, nil
		}
		f.Close() // removed by its previous holder: lock the new one
	}
}

// checkPattern names the files checkLockable creates.
const checkPattern = ".check-*"

// checkLockable checks that dir takes files and flock locks on them.
func checkLockable(dir string) error {
	f, err := os.CreateTemp(dir, checkPattern)
	if err != nil {
		return fmt.Errorf("store: %s is not writable: %w", dir, err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return fmt.Errorf("store: %s does not take file locks (flock): %w", dir, err)
	}
	return nil
}
