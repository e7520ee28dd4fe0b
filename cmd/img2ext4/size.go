package main

import (
	"fmt"
	"strconv"
	"strings"
)

// parseSize reads a byte count such as 1048576, 512K, 64M, 2G, 1T; a trailing "iB" or "B"
// is allowed ("2MiB", "2MB"); every unit is a power of 1024.
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "i")
	mult := int64(1)
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'k', 'K':
			mult = 1 << 10
		case 'm', 'M':
			mult = 1 << 20
		case 'g', 'G':
			mult = 1 << 30
		case 't', 'T':
			mult = 1 << 40
		}
		if mult > 1 {
			t = t[:n-1]
		}
	}
	v, err := strconv.ParseInt(t, 10, 64)
	if err != nil || v < 0 || v > (1<<62)/mult {
		return 0, fmt.Errorf("bad size %q (want e.g. 4096, 512M, 2G)", s)
	}
	return v * mult, nil
}

// formatSize writes n the way a user types it: with the largest unit (K, M, G, T) that
// divides it exactly, or in bytes.
func formatSize(n int64) string {
	for _, u := range []struct {
		suffix string
		shift  uint
	}{{"T", 40}, {"G", 30}, {"M", 20}, {"K", 10}} {
		if n != 0 && n%(1<<u.shift) == 0 {
			return strconv.FormatInt(n>>u.shift, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

// sizeValue is a pflag.Value holding a byte count.
type sizeValue struct{ n *int64 }

func (v sizeValue) String() string {
	if v.n == nil {
		return "0"
	}
	return formatSize(*v.n)
}

func (v sizeValue) Set(s string) error {
	n, err := parseSize(s)
	if err != nil {
		return err
	}
	*v.n = n
	return nil
}

func (v sizeValue) Type() string { return "size" }

// freeValue is a pflag.Value holding either a byte count or a percentage ("10%").
type freeValue struct {
	bytes   *int64
	percent *int
	set     *bool // given at all: 0 then means the smallest image
}

func (v freeValue) String() string {
	if v.percent != nil && *v.percent > 0 {
		return strconv.Itoa(*v.percent) + "%"
	}
	if v.bytes != nil {
		return formatSize(*v.bytes)
	}
	return "0"
}

func (v freeValue) Set(s string) error {
	if p, ok := strings.CutSuffix(strings.TrimSpace(s), "%"); ok {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 10000 {
			return fmt.Errorf("bad percentage %q", s)
		}
		*v.percent, *v.bytes, *v.set = n, 0, true
		return nil
	}
	n, err := parseSize(s)
	if err != nil {
		return err
	}
	*v.bytes, *v.percent, *v.set = n, 0, true
	return nil
}

// percentValue is a pflag.Value holding a percentage, "5%" or "5".
type percentValue struct{ n *int }

func (v percentValue) String() string {
	if v.n == nil {
		return "0%"
	}
	return strconv.Itoa(*v.n) + "%"
}

func (v percentValue) Set(s string) error {
	n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(s), "%"))
	if err != nil || n < 0 || n > 50 {
		return fmt.Errorf("bad percentage %q (want 0%% to 50%%)", s)
	}
	*v.n = n
	return nil
}

func (v percentValue) Type() string { return "N%" }

func (v freeValue) Type() string { return "size|N%" }
