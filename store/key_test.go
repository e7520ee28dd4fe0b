package store

import (
	"errors"
	"testing"
)

func TestKey(t *testing.T) {
	base := func() Inputs {
		return Inputs{Source: "sha256:aa", Platform: "linux/amd64", Format: "ext4",
			Options: map[string]string{"ext4": `{"Size":0}`, "strict": "true"}, Files: map[string]string{"add.0": "sha256:bb"}, Version: "v1"}
	}
	k := base().Key()
	if _, err := ParseKey(string(k)); err != nil {
		t.Fatalf("key %s does not parse: %v", k, err)
	}
	if k2 := base().Key(); k2 != k {
		t.Fatalf("same inputs, keys %s and %s", k, k2)
	}
	// Map order does not matter: the same entries inserted the other way round.
	in := base()
	in.Options = map[string]string{"strict": "true", "ext4": `{"Size":0}`}
	if in.Key() != k {
		t.Error("key depends on map insertion order")
	}
	for _, tc := range []struct {
		name string
		edit func(*Inputs)
	}{
		{"source", func(in *Inputs) { in.Source = "sha256:ab" }},
		{"platform", func(in *Inputs) { in.Platform = "linux/arm64" }},
		{"format", func(in *Inputs) { in.Format = "tar" }},
		{"option value", func(in *Inputs) { in.Options["strict"] = "false" }},
		{"option removed", func(in *Inputs) { delete(in.Options, "strict") }},
		{"file digest", func(in *Inputs) { in.Files["add.0"] = "sha256:bc" }},
		{"file role", func(in *Inputs) { in.Files = map[string]string{"add.1": "sha256:bb"} }},
		{"version", func(in *Inputs) { in.Version = "v2" }},
		// A value moved between two fields must not collide.
		{"moved", func(in *Inputs) { in.Platform, in.Format = "linux/amd64ext4", "" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := base()
			tc.edit(&in)
			if in.Key() == k {
				t.Errorf("changing the %s kept key %s", tc.name, k)
			}
		})
	}
}

func TestParseKey(t *testing.T) {
	good := "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, tc := range []struct {
		in, want string
	}{
		{good, good},
		{good[len("sha256:"):], good},
		{"sha256:0123", ""},
		{"sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef", ""},
		{"sha512:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", ""},
		{"../../../../etc/passwd", ""},
	} {
		k, err := ParseKey(tc.in)
		if tc.want == "" {
			if !errors.Is(err, ErrBadKey) {
				t.Errorf("ParseKey(%q) = %q, %v; want ErrBadKey", tc.in, k, err)
			}
			continue
		}
		if err != nil || string(k) != tc.want {
			t.Errorf("ParseKey(%q) = %q, %v; want %q", tc.in, k, err, tc.want)
		}
	}
}
