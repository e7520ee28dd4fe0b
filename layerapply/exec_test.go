package layerapply_test

import (
	"os/exec"
	"testing"
)

func runTar(t *testing.T, args ...string) error {
	t.Helper()
	p, err := exec.LookPath("tar")
	if err != nil {
		return err
	}
	out, err := exec.Command(p, args...).CombinedOutput()
	if err != nil {
		t.Logf("tar: %s", out)
	}
	return err
}
