package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The test binary doubles as a helper process that builds one artifact, so that
// concurrency and crashes are tested across real processes.
const helperEnv = "STORE_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(helperMain())
	}
	os.Exit(m.Run())
}

// helperMain builds the artifact of STORE_TEST_KEY in STORE_TEST_ROOT; it kills itself at
// the step STORE_TEST_CRASH names. The build appends a line to STORE_TEST_MARKER, writes
// an image of 4 MiB with a hole in small steps and prints the artifact's content digest.
func helperMain() int {
	if step := os.Getenv("STORE_TEST_CRASH"); step != "" {
		hook = func(s string) {
			if s == step {
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
			}
		}
	}
	s, err := Open(os.Getenv("STORE_TEST_ROOT"), WithWait(time.Minute))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	in := testInputs(os.Getenv("STORE_TEST_KEY"))
	a, err := s.Build(context.Background(), in.Key(), in, Builder{Build: func(ctx context.Context, dir string) ([]byte, error) {
		return testBuild(dir, in.Source, os.Getenv("STORE_TEST_MARKER"))
	}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(a.Digest)
	return 0
}

func testInputs(name string) Inputs {
	return Inputs{Source: "sha256:" + name, Platform: "linux/amd64", Format: "ext4", Version: "test"}
}

// testBuild writes the artifact of source: 1 MiB of data, a 2 MiB hole, 1 MiB of data,
// in steps with short pauses so that a kill lands in the middle; it counts itself in
// marker.
func testBuild(dir, source, marker string) ([]byte, error) {
	if marker != "" {
		f, err := os.OpenFile(marker, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(f, "%d\n", os.Getpid())
		f.Close()
	}
	f, err := os.Create(filepath.Join(dir, "image"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	chunk := bytes.Repeat([]byte(source), (64<<10)/len(source)+1)[:64<<10]
	for off := int64(0); off < 4<<20; off += 64 << 10 {
		if off >= 1<<20 && off < 3<<20 {
			continue
		}
		if _, err := f.WriteAt(chunk, off); err != nil {
			return nil, err
		}
		time.Sleep(2 * time.Millisecond)
	}
	if err := f.Truncate(4 << 20); err != nil {
		return nil, err
	}
	return json.Marshal(map[string]string{"source": source})
}

// helper starts the helper process building key in root.
func helper(t *testing.T, root, key, marker, crash string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1", "STORE_TEST_ROOT="+root, "STORE_TEST_KEY="+key,
		"STORE_TEST_MARKER="+marker, "STORE_TEST_CRASH="+crash)
	cmd.Stdout = new(bytes.Buffer)
	cmd.Stderr = new(bytes.Buffer)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

func open(t *testing.T, root string, opts ...Option) *Store {
	t.Helper()
	s, err := Open(root, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func build(t *testing.T, s *Store, name string) *Artifact {
	t.Helper()
	in := testInputs(name)
	a, err := s.Build(context.Background(), in.Key(), in, Builder{Build: func(ctx context.Context, dir string) ([]byte, error) {
		return testBuild(dir, in.Source, "")
	}})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// checkClean verifies the store and checks that no work directory is left.
func checkClean(t *testing.T, s *Store) {
	t.Helper()
	rep, err := s.Verify(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Errorf("verify: %+v", rep.Problems)
	}
	for _, root := range s.roots {
		for _, d := range []string{workDir, trashDir} {
			if des, _ := os.ReadDir(filepath.Join(root, d)); len(des) > 0 {
				t.Errorf("%s left after verify: %v", d, des)
			}
		}
	}
}

func TestBuildGet(t *testing.T) {
	s := open(t, t.TempDir())
	ctx := context.Background()
	in := testInputs("a")
	if _, err := s.Get(ctx, in.Key()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get on an empty store: %v", err)
	}
	a := build(t, s, "a")
	if !a.Built || a.Key != in.Key() || a.Size != 4<<20 || len(a.Files) != 1 || a.Files[0].Name != "image" || string(a.Meta) != `{"source":"sha256:a"}` {
		t.Errorf("built %+v", a.Record)
	}
	if a.Allocated >= a.Size {
		t.Errorf("allocated %d of %d bytes: the hole was not kept", a.Allocated, a.Size)
	}
	g, err := s.Get(ctx, in.Key())
	if err != nil {
		t.Fatal(err)
	}
	if g.Built || g.Digest != a.Digest || g.Path("image") != a.Path("image") || !g.LastUse.After(a.Created.Add(-time.Second)) {
		t.Errorf("got %+v, built %+v", g, a)
	}
	// A second Build is a hit and calls no builder.
	b, err := s.Build(ctx, in.Key(), in, Builder{Build: func(context.Context, string) ([]byte, error) {
		t.Error("builder called on a hit")
		return nil, nil
	}})
	if err != nil || b.Built {
		t.Errorf("second build: %v, built %v", err, b != nil && b.Built)
	}
	as, err := s.List(ctx)
	if err != nil || len(as) != 1 || as[0].Key != in.Key() {
		t.Errorf("List = %v, %v", as, err)
	}
	// A failing build leaves nothing.
	bad := testInputs("bad")
	if _, err := s.Build(ctx, bad.Key(), bad, Builder{Build: func(ctx context.Context, dir string) ([]byte, error) {
		os.WriteFile(filepath.Join(dir, "image"), []byte("half"), 0o644)
		return nil, errors.New("boom")
	}}); err == nil || err.Error() != "boom" {
		t.Errorf("failing build: %v", err)
	}
	if _, err := s.Get(ctx, bad.Key()); !errors.Is(err, ErrNotFound) {
		t.Errorf("after a failed build: %v", err)
	}
	checkClean(t, s)
	if err := s.Remove(ctx, in.Key()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, in.Key()); !errors.Is(err, ErrNotFound) {
		t.Errorf("after Remove: %v", err)
	}
	if err := s.Remove(ctx, in.Key()); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Remove: %v", err)
	}
	checkClean(t, s)
}

// TestProcesses: processes asking for one key build it once and all get the same
// artifact, while another key builds beside them.
func TestProcesses(t *testing.T) {
	root := t.TempDir()
	marker := filepath.Join(t.TempDir(), "builds")
	other := filepath.Join(t.TempDir(), "other")
	const n = 5
	var cmds []*exec.Cmd
	for range n {
		cmds = append(cmds, helper(t, root, "same", marker, ""))
	}
	cmds = append(cmds, helper(t, root, "other", other, ""))
	var digests []string
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("process %d: %v\n%s", i, err, cmd.Stderr)
		}
		digests = append(digests, strings.TrimSpace(cmd.Stdout.(*bytes.Buffer).String()))
	}
	b, _ := os.ReadFile(marker)
	if lines := strings.Count(string(b), "\n"); lines != 1 {
		t.Errorf("%d processes asking for one key built it %d times", n, lines)
	}
	for i, d := range digests[:n] {
		if d != digests[0] || !strings.HasPrefix(d, "sha256:") {
			t.Errorf("process %d got %q, process 0 %q", i, d, digests[0])
		}
	}
	if digests[n] == digests[0] {
		t.Error("the other key got the same artifact")
	}
	checkClean(t, open(t, root))
}

var steps = []string{"locked", "work", "built", "sealed", "renamed", "published"}

// TestKill: a build killed (SIGKILL) at any step leaves a store that verifies clean, and
// the next request builds, or finds the artifact when the kill came after its rename.
func TestKill(t *testing.T) {
	for _, step := range steps {
		t.Run(step, func(t *testing.T) {
			root := t.TempDir()
			cmd := helper(t, root, "k", "", step)
			err := cmd.Wait()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("helper: %v, want killed\n%s", err, cmd.Stderr)
			}
			checkAfterKill(t, root, step == "renamed" || step == "published")
		})
	}
	// Kills at random moments, with a fixed seed so that a failure can be rerun.
	rng := rand.New(rand.NewPCG(9, 9))
	for i := range 6 {
		t.Run("random"+strconv.Itoa(i), func(t *testing.T) {
			root := t.TempDir()
			cmd := helper(t, root, "r", "", "")
			time.Sleep(time.Duration(rng.IntN(150)) * time.Millisecond)
			cmd.Process.Signal(syscall.SIGKILL)
			err := cmd.Wait()
			_, hit := os.Stat(filepath.Join(root, artifactsDir, testInputs("r").Key().Hex()))
			if err == nil && hit != nil {
				t.Fatal("the helper succeeded but published nothing")
			}
			checkAfterKill(t, root, hit == nil)
		})
	}
}

func checkAfterKill(t *testing.T, root string, published bool) {
	t.Helper()
	s := open(t, root)
	checkClean(t, s)
	as, _ := s.List(context.Background())
	if published != (len(as) == 1) {
		t.Errorf("published %v, but the store lists %d artifacts", published, len(as))
	}
	// The next request succeeds: it builds unless the artifact was published.
	for _, name := range []string{"k", "r"} {
		in := testInputs(name)
		if _, err := os.Stat(filepath.Join(root, locksDir, in.Key().Hex()+".lock")); err != nil {
			continue
		}
		a, err := s.Build(context.Background(), in.Key(), in, Builder{Build: func(ctx context.Context, dir string) ([]byte, error) {
			return testBuild(dir, in.Source, "")
		}})
		if err != nil {
			t.Fatal(err)
		}
		if a.Built == published {
			t.Errorf("published before the kill: %v; built now: %v", published, a.Built)
		}
	}
	checkClean(t, s)
}

func TestWait(t *testing.T) {
	root := t.TempDir()
	s := open(t, root)
	in := testInputs("w")
	unlock, err := s.lock(context.Background(), in.Key())
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	never := Builder{Build: func(context.Context, string) ([]byte, error) { return nil, errors.New("built while locked") }}
	short := open(t, root, WithWait(50*time.Millisecond))
	if _, err := short.Build(context.Background(), in.Key(), in, never); !errors.Is(err, ErrWaitTimeout) {
		t.Errorf("build of a locked key: %v, want ErrWaitTimeout", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(20 * time.Millisecond); cancel() }()
	if _, err := s.Build(ctx, in.Key(), in, never); !errors.Is(err, context.Canceled) {
		t.Errorf("build cancelled while waiting: %v", err)
	}
}

func TestPrune(t *testing.T) {
	s := open(t, t.TempDir())
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s.o.now = func() time.Time { return now }
	var as []*Artifact
	for _, name := range []string{"a", "b", "c"} {
		now = now.Add(time.Hour)
		as = append(as, build(t, s, name))
	}
	// Use a last: then the order of use, most recent first, is a, c, b.
	now = now.Add(time.Hour)
	if _, err := s.Get(ctx, as[0].Key); err != nil {
		t.Fatal(err)
	}
	one := as[0].Allocated
	rep, err := s.Prune(ctx, PruneOptions{MaxSize: 2*one + one/2})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Removed) != 1 || rep.Removed[0].Key != as[1].Key || rep.Kept != 2 {
		t.Fatalf("prune to 2.5 artifacts removed %d (%v), kept %d; want b removed", len(rep.Removed), rep.Removed, rep.Kept)
	}
	// Older than 30 minutes: c was used an hour ago, a just now.
	rep, err = s.Prune(ctx, PruneOptions{OlderThan: 30 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Removed) != 1 || rep.Removed[0].Key != as[2].Key {
		t.Fatalf("prune older than 30m removed %v; want c", rep.Removed)
	}
	left, _ := s.List(ctx)
	if len(left) != 1 || left[0].Key != as[0].Key {
		t.Errorf("left %v; want the most recently used, a", left)
	}
	checkClean(t, s)
}

func TestVerifyFindsDamage(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(a *Artifact) error
	}{
		{"flipped byte", func(a *Artifact) error {
			f, err := os.OpenFile(a.Path("image"), os.O_RDWR, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.WriteAt([]byte{'X'}, 5)
			return err
		}},
		{"truncated", func(a *Artifact) error { return os.Truncate(a.Path("image"), 100) }},
		{"extra file", func(a *Artifact) error { return os.WriteFile(a.Path("junk"), nil, 0o644) }},
		{"missing record", func(a *Artifact) error { return os.Remove(a.Path(recordFile)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t, t.TempDir())
			a := build(t, s, "v")
			if err := tc.damage(a); err != nil {
				t.Fatal(err)
			}
			rep, err := s.Verify(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Problems) != 1 || rep.Problems[0].Key != a.Key {
				t.Errorf("problems %+v, want one for %s", rep.Problems, a.Key)
			}
			if tc.name != "missing record" {
				v := open(t, s.Root(), WithVerifyOnGet(true))
				if _, err := v.Get(context.Background(), a.Key); !errors.Is(err, ErrCorrupt) {
					t.Errorf("Get with verification: %v, want ErrCorrupt", err)
				}
			}
			// Build replaces a damaged artifact (one whose damage Get sees).
			s = open(t, s.Root(), WithVerifyOnGet(true))
			if b := build(t, s, "v"); !b.Built {
				t.Error("Build returned the damaged artifact")
			}
			checkClean(t, s)
		})
	}
}

func TestPreflightSums(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	var st unix.Statfs_t
	if err := unix.Statfs(a, &st); err != nil {
		t.Fatal(err)
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	part := free/2 + free/10
	if _, err := Preflight(Usage{Dir: a, Bytes: part, What: "artifact"}); err != nil {
		t.Fatalf("one use of 60%% of the free space: %v", err)
	}
	fss, err := Preflight(Usage{Dir: a, Bytes: part, What: "artifact"}, Usage{Dir: b, Bytes: part, What: "temporary files"})
	var se *SpaceError
	if !errors.As(err, &se) || !errors.Is(err, ErrNoSpace) {
		t.Fatalf("two uses of 60%% each on one filesystem: %v", err)
	}
	if len(fss) != 1 || se.Need != 2*part || len(se.Dirs) != 2 || !strings.Contains(err.Error(), "needed") {
		t.Errorf("filesystems %+v, error %v", fss, err)
	}
	if _, err := Preflight(Usage{Dir: filepath.Join(a, "missing")}); err == nil {
		t.Error("a missing directory passed")
	}
}

// TestFallback: a primary root on a filesystem too small for the build puts the artifact
// in the fallback root, where Get finds it.
func TestFallback(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs for a full primary root needs root")
	}
	primary := t.TempDir()
	if err := unix.Mount("tmpfs", primary, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(primary, 0) })
	fallback := t.TempDir()
	s := open(t, primary, WithFallback(fallback))
	in := testInputs("f")
	b := Builder{
		Need:  func(context.Context) (Need, error) { return Need{Image: 4 << 20}, nil },
		Build: func(ctx context.Context, dir string) ([]byte, error) { return testBuild(dir, in.Source, "") },
	}
	a, err := s.Build(context.Background(), in.Key(), in, b)
	if err != nil {
		t.Fatal(err)
	}
	if a.Root != fallback {
		t.Errorf("artifact in %s, want the fallback %s", a.Root, fallback)
	}
	g, err := open(t, primary, WithFallback(fallback)).Get(context.Background(), in.Key())
	if err != nil || g.Dir != a.Dir {
		t.Errorf("Get: %v, %v", g, err)
	}
	// Without a fallback the build fails early, with numbers.
	in2 := testInputs("g")
	_, err = open(t, primary).Build(context.Background(), in2.Key(), in2, b)
	if !errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), "4.0 MiB") {
		t.Errorf("build without a fallback: %v", err)
	}
	checkClean(t, s)
}

func TestCopyFile(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	a := build(t, s, "c")
	src, err := os.Open(a.Path("image"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.Create(filepath.Join(dir, "copy"))
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if _, err := CopyFile(dst, src); err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(a.Path("image"))
	got, _ := os.ReadFile(dst.Name())
	if !bytes.Equal(got, want) {
		t.Fatal("copy differs")
	}
	var st unix.Stat_t
	if err := unix.Stat(dst.Name(), &st); err != nil {
		t.Fatal(err)
	}
	if st.Blocks*512 > a.Allocated {
		t.Errorf("the copy allocates %d bytes, the original %d: holes were filled", st.Blocks*512, a.Allocated)
	}
}
