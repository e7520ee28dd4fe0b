package img2ext4_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"regexp"
	"sort"
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

// walkLibrarySources calls fn with the path of every non-test Go file of the library
// packages: the module outside cmd/, bench/, testdata, vendor, hidden directories and
// the test-only helper packages.
func walkLibrarySources(fn func(path string) error) error {
	return filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p == "cmd" || p == "bench" || p == "testdata" || p == "vendor" || strings.HasPrefix(d.Name(), ".") && p != "." {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") || testOnly[filepath.ToSlash(filepath.Dir(p))] {
			return nil
		}
		return fn(p)
	})
}

// TestLibraryImports keeps the libraries free of the CLI's concerns: no package outside
// cmd/ imports cmd/, pflag or os/exec (tests may use os/exec to run oracles), except that
// the packages in mayRun may import os/exec.
func TestLibraryImports(t *testing.T) {
	forbidden := []string{"github.com/img2ext4/img2ext4/cmd", "github.com/spf13/pflag", "os/exec"}
	for p := range testOnly {
		forbidden = append(forbidden, "github.com/img2ext4/img2ext4/"+p)
	}
	fset := token.NewFileSet()
	err := walkLibrarySources(func(p string) error {
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

// TestLibraryNamesNoFlag keeps the CLI's flag names out of the libraries' messages: no
// string literal outside cmd/ and tests says "--NAME" for a flag the CLI defines, except
// the arguments of another program's command line (literals in an append call or a
// []string literal). The CLI maps library errors to its flags where a user needs them.
func TestLibraryNamesNoFlag(t *testing.T) {
	fset := token.NewFileSet()
	flags := map[string]bool{}
	cmdFiles, err := filepath.Glob("cmd/img2ext4/*.go")
	if err != nil {
		t.Fatal(err)
	}
	flagFunc := regexp.MustCompile(`^(Bool|String|Int|Int64|Uint32|Duration|Count|StringArray|StringSlice|Float64)?(Var)?P?$`)
	for _, p := range cmdFiles {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || !flagFunc.MatchString(sel.Sel.Name) {
				return true
			}
			for _, a := range call.Args {
				if lit, ok := a.(*ast.BasicLit); ok && lit.Kind == token.STRING {
					if s, _ := strconv.Unquote(lit.Value); regexp.MustCompile(`^[a-z][a-z0-9-]+$`).MatchString(s) {
						flags[s] = true
					}
					break // the first string is the name
				}
			}
			return true
		})
	}
	for _, must := range []string{"format", "verity", "store", "exporter"} {
		if !flags[must] {
			t.Fatalf("found the flags %v in cmd/img2ext4, not --%s: the scan is broken", flags, must)
		}
	}
	names := make([]string, 0, len(flags))
	for f := range flags {
		names = append(names, regexp.QuoteMeta(f))
	}
	sort.Strings(names)
	named := regexp.MustCompile(`--(` + strings.Join(names, "|") + `)\b[^-]`)
	err = walkLibrarySources(func(p string) error {
		f, err := parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			return err
		}
		argv := map[*ast.BasicLit]bool{} // another program's arguments
		ast.Inspect(f, func(n ast.Node) bool {
			var elts []ast.Expr
			switch n := n.(type) {
			case *ast.CallExpr:
				if id, ok := n.Fun.(*ast.Ident); ok && id.Name == "append" {
					elts = n.Args
				}
			case *ast.CompositeLit:
				if at, ok := n.Type.(*ast.ArrayType); ok {
					if id, ok := at.Elt.(*ast.Ident); ok && id.Name == "string" {
						elts = n.Elts
					}
				}
			case *ast.BasicLit:
				if n.Kind == token.STRING && !argv[n] {
					s, _ := strconv.Unquote(n.Value)
					if m := named.FindStringSubmatch(s + " "); m != nil {
						t.Errorf("%s: %q names the CLI flag --%s; say it in the library's terms (the Option) and let cmd/ map it", fset.Position(n.Pos()), s, m[1])
					}
				}
			}
			for _, e := range elts {
				if lit, ok := e.(*ast.BasicLit); ok {
					argv[lit] = true
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
