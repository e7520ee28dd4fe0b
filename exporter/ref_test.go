package exporter

import (
	"errors"
	"testing"
)

func TestSkopeoRef(t *testing.T) {
	for _, tc := range []struct {
		in, want  string
		plainHTTP bool
		err       error
	}{
		{in: "alpine:3.20", want: "docker://alpine:3.20"},
		{in: "docker://quay.io/a/b:1", want: "docker://quay.io/a/b:1"},
		{in: "127.0.0.1:5000/a:1", want: "docker://127.0.0.1:5000/a:1", plainHTTP: true},
		{in: "localhost:5000/a", want: "docker://localhost:5000/a", plainHTTP: true},
		{in: "[::1]:5000/a", want: "docker://[::1]:5000/a", plainHTTP: true},
		{in: "http://10.0.0.1:5000/a:1", want: "docker://10.0.0.1:5000/a:1", plainHTTP: true},
		{in: "https://reg.example/a", want: "docker://reg.example/a"},
		{in: "containers-storage:[vfs@/r+/rr]alpine", want: "containers-storage:[vfs@/r+/rr]alpine"},
		{in: "docker-daemon:alpine:1", want: "docker-daemon:alpine:1"},
		{in: "dir:/tmp/x", want: "dir:/tmp/x"},
		{in: "./layout", err: ErrUnsupported},
		{in: "/srv/app.tar", err: ErrUnsupported},
		{in: "UPPER/Case", err: ErrUnsupported},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, plain, err := skopeoRef(tc.in)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want || plain != tc.plainHTTP {
				t.Errorf("skopeoRef(%q) = %q, %v, %v; want %q, %v", tc.in, got, plain, err, tc.want, tc.plainHTTP)
			}
		})
	}
}

func TestParseMode(t *testing.T) {
	for _, s := range []string{"auto", "native", "docker", "skopeo"} {
		if m, err := ParseMode(s); err != nil || string(m) != s {
			t.Errorf("ParseMode(%q) = %q, %v", s, m, err)
		}
	}
	for _, s := range []string{"", "podman", "Auto"} {
		if _, err := ParseMode(s); err == nil {
			t.Errorf("ParseMode(%q) accepted", s)
		}
	}
}
