package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

// buildBinary builds the command once for the tests that run it as a process (signals,
// another user, --version), into a directory any user may read. It skips the test when
// the go tool is missing.
func buildBinary(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not found: cannot build the binary to run")
	}
	binOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "img2ext4-bin-"); binErr != nil {
			return
		}
		os.Chmod(binDir, 0o755)
		binPath = filepath.Join(binDir, "img2ext4")
		// Record the commit even where GOFLAGS says -buildvcs=false (TestVersionCommit);
		// where git cannot tell it (another user's checkout), build without it.
		if _, err := exec.Command(goBin, "build", "-buildvcs=true", "-o", binPath, ".").CombinedOutput(); err == nil {
			return
		}
		if out, err := exec.Command(goBin, "build", "-buildvcs=false", "-o", binPath, ".").CombinedOutput(); err != nil {
			binErr = &buildError{err, out}
		}
	})
	if binErr != nil {
		t.Fatalf("build: %v", binErr)
	}
	return binPath
}

type buildError struct {
	err error
	out []byte
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + string(e.out) }

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}
