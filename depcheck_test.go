package img2ext4_test

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// testOnly are helper packages for tests alone: they may run oracles with os/exec, and
// only _test.go files may import them.
var testOnly = map[string]bool{"internal/trusttest": true, "internal/registrytest": true}

// mayRun are the library packages allowed to run programs: the optional fallback
// exporters (skopeo, docker save), which nothing reaches unless asked to.
var mayRun = map[string]bool{"exporter": true}

// TestLibraryImports keeps the libraries free of the CLI's concerns: no package outside
// cmd/ imports cmd/, pflag or os/exec (tests may use os/exec to run oracles), except that
// the packages in mayRun may import os/exec.
func TestLibraryImports(t *testing.T) {
	forbidden := []string{"github.com/img2ext4/img2ext4/cmd", "github.com/spf13/pflag", "os/exec"}
	for p := range testOnly {
		forbidden = append(forbidden, "github.com/img2ext4/img2ext4/"+p)
	}
	fset := token.NewFileSet()
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p == "cmd" || p == "bench" || p == "testdata" || p == "vendor" || strings.HasPrefix(d.Name(), ".") && p != "." {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		if testOnly[filepath.ToSlash(filepath.Dir(p))] {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			for _, bad := range forbidden {
				if bad == "os/exec" && mayRun[filepath.ToSlash(filepath.Dir(p))] {
					continue
				}
				if path == bad || strings.HasPrefix(path, bad+"/") {
					t.Errorf("%s imports %s", p, path)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
