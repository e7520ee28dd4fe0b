package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// recordModel is the oracle of FuzzRecord: what the store's documentation says of an
// artifact directory named by dirKey, decided from its record's bytes and the files in
// it without the store's code. readable: the record is JSON, names dirKey (the
// directory is the artifact it says it is) and lists plain file names (not the store's
// own record.json or used), each once: what the store acts on. sound: besides, Verify
// finds nothing wrong: every listed file is in the directory with the recorded size and
// digest, nothing else is in the directory, Size is the sum of the sizes and Digest the SHA-256 of the lines
// "DIGEST SIZE NAME\n".
func recordModel(dirKey string, record []byte, files map[string][]byte) (readable, sound bool) {
	// The record's JSON schema, field types included (a record that does not decode is
	// unreadable): Record's documented fields, written out again here.
	var rec struct {
		Key    string
		Inputs struct {
			Source, Platform, Format, Version string
			Options, Files                    map[string]string
		}
		Files []struct {
			Name   string
			Size   int64
			Digest string
		}
		Size    int64
		Digest  string
		Created time.Time
		Meta    json.RawMessage
	}
	if json.Unmarshal(record, &rec) != nil || rec.Key != dirKey {
		return false, false
	}
	listed := map[string]bool{}
	for _, f := range rec.Files {
		plain := f.Name != "" && f.Name != "." && f.Name != ".." && !strings.ContainsAny(f.Name, "/\x00")
		if !plain || listed[f.Name] || f.Name == "record.json" || f.Name == "used" {
			return false, false
		}
		listed[f.Name] = true
	}
	var sum int64
	lines := sha256.New()
	for _, f := range rec.Files {
		body, ok := files[f.Name]
		if !ok {
			return true, false
		}
		d := sha256.Sum256(body)
		if f.Size != int64(len(body)) || f.Digest != "sha256:"+hex.EncodeToString(d[:]) {
			return true, false
		}
		sum += f.Size
		fmt.Fprintf(lines, "%s %d %s\n", f.Digest, f.Size, f.Name)
	}
	if len(listed) != len(files) || sum != rec.Size || rec.Digest != "sha256:"+hex.EncodeToString(lines.Sum(nil)) {
		return true, false
	}
	return true, true
}

// FuzzRecord writes a fuzzed record.json into an artifact directory of a store, beside a
// file "image" (fuzzed bytes) and maybe another (a fuzzed name), next to a sound artifact
// built by the store and a file outside the store, and checks what the store makes of
// it against recordModel: Verify reports the artifact iff it is not sound, Get with
// verification fails iff it is not sound, List shows it under its directory's key iff
// readable, and Prune of everything unused for an hour removes it iff readable and
// touches nothing else (the sound artifact, used now, and the file outside stay).
func FuzzRecord(f *testing.F) {
	image := []byte("image bytes")
	d := sha256.Sum256(image)
	file := File{Name: "image", Size: int64(len(image)), Digest: "sha256:" + hex.EncodeToString(d[:])}
	key := testInputs("a").Key()
	rec := Record{Key: key, Inputs: testInputs("a"), Files: []File{file}, Size: file.Size,
		Digest: contentDigest([]File{file}), Created: time.Unix(0, 0).UTC()}
	good, _ := json.Marshal(rec)
	f.Add(good, image, "")
	f.Add(good, image, "extra")
	f.Add(good, []byte("other bytes"), "")
	other := rec
	other.Key = testInputs("b").Key()
	b, _ := json.Marshal(other)
	f.Add(b, image, "")
	other.Key = "sha256:../../outside"
	b, _ = json.Marshal(other)
	f.Add(b, image, "")
	other = rec
	other.Files = []File{file, file}
	other.Size, other.Digest = 2*file.Size, contentDigest(other.Files)
	b, _ = json.Marshal(other)
	f.Add(b, image, "")
	other = rec
	other.Size = 1
	b, _ = json.Marshal(other)
	f.Add(b, image, "")
	outside := []byte("outside")
	od := sha256.Sum256(outside)
	escape := File{Name: "../../../outside", Size: int64(len(outside)), Digest: "sha256:" + hex.EncodeToString(od[:])}
	other = rec
	other.Files = []File{file, escape}
	other.Size, other.Digest = file.Size+escape.Size, contentDigest(other.Files)
	b, _ = json.Marshal(other)
	f.Add(b, image, "")
	f.Add([]byte(`{"key":"`+string(key)+`"}`), image, "")
	f.Add([]byte(`{}`), image, "")
	f.Fuzz(func(t *testing.T, record, body []byte, extra string) {
		ctx := context.Background()
		base := t.TempDir()
		root := filepath.Join(base, "store")
		if err := os.WriteFile(filepath.Join(base, "outside"), outside, 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := Open(root, WithVerifyOnGet(true))
		if err != nil {
			t.Fatal(err)
		}
		inB := testInputs("b")
		if _, err := s.Build(ctx, inB.Key(), inB, Builder{Build: func(ctx context.Context, dir string) ([]byte, error) {
			return nil, os.WriteFile(filepath.Join(dir, "image"), []byte("b"), 0o644)
		}}); err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(root, artifactsDir, key.Hex())
		files := map[string][]byte{"image": body}
		if extra != "" && !strings.ContainsAny(extra, "/\x00") && extra != "." && extra != ".." && extra != "image" &&
			extra != recordFile && extra != usedFile && len(extra) < 200 {
			files[extra] = []byte(extra)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for n, b := range files {
			if err := os.WriteFile(filepath.Join(dir, n), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, recordFile), record, 0o644); err != nil {
			t.Fatal(err)
		}
		used := filepath.Join(dir, usedFile)
		hourAgo := time.Now().Add(-2 * time.Hour)
		if err := os.WriteFile(used, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(used, hourAgo, hourAgo); err != nil {
			t.Fatal(err)
		}
		readable, sound := recordModel(string(key), record, files)

		rep, err := s.Verify(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var problems []string
		for _, p := range rep.Problems {
			if p.Path != dir {
				t.Fatalf("Verify reports the sound artifact: %+v", p)
			}
			problems = append(problems, p.Err)
		}
		if sound != (len(problems) == 0) {
			t.Fatalf("sound %v, but Verify reports %q\nrecord %s", sound, problems, record)
		}
		if _, err := s.Get(ctx, key); sound != (err == nil) {
			t.Fatalf("sound %v, but Get with verification: %v\nrecord %s", sound, err, record)
		}
		// Get touched it when it returned it: make it old again for Prune.
		if err := os.Chtimes(used, hourAgo, hourAgo); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		as, err := s.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		listed := false
		for _, a := range as {
			if a.Key.Hex() != filepath.Base(a.Dir) {
				t.Fatalf("List shows the artifact in %s as %s\nrecord %s", a.Dir, a.Key, record)
			}
			listed = listed || a.Dir == dir
		}
		if listed != readable {
			t.Fatalf("readable %v, but listed %v\nrecord %s", readable, listed, record)
		}
		if _, err := s.Prune(ctx, PruneOptions{OlderThan: time.Hour}); err != nil {
			t.Fatalf("Prune: %v\nrecord %s", err, record)
		}
		if _, err := os.Stat(filepath.Join(base, "outside")); err != nil {
			t.Fatalf("Prune removed a file outside the store: %v\nrecord %s", err, record)
		}
		if _, err := s.Get(ctx, inB.Key()); err != nil {
			t.Fatalf("the sound artifact, after Prune: %v\nrecord %s", err, record)
		}
		_, err = os.Stat(dir)
		if gone := os.IsNotExist(err); gone != readable {
			t.Fatalf("readable %v, but removed by Prune %v (%v)\nrecord %s", readable, gone, err, record)
		}
	})
}
