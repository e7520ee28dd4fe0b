package progress

import (
	"strconv"
)

var byteUnits = [...]string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}

// HumanBytes formats n bytes with 1024-based units: "512 B", "1.0 KiB",
// "1.5 MiB", "2.0 GiB", up to EiB, with one decimal above a KiB. A value
// that would round to 1024.0 of a unit is shown as 1.0 of the next.
// Negative values get a leading minus sign.
func HumanBytes(n int64) string {
	sign := ""
	u := uint64(n)
	if n < 0 {
		sign = "-"
		u = uint64(-(n + 1)) + 1 // magnitude, without overflowing on MinInt64
	}
	if u < 1024 {
		return sign + strconv.FormatUint(u, 10) + " B"
	}
	v := float64(u) / 1024
	i := 0
	for v >= 1024 && i < len(byteUnits)-1 {
		v /= 1024
		i++
	}
	if v >= 1023.95 && i < len(byteUnits)-1 {
		v /= 1024
		i++
	}
	return sign + strconv.FormatFloat(v, 'f', 1, 64) + " " + byteUnits[i]
}
