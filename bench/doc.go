// Package bench holds the end-to-end and per-stage benchmarks of img2ext4 against its
// peers. It is a module of its own so that the peers' dependencies (hcsshim) never enter
// the main module; see README.md. Nothing here is a pass/fail test.
package bench
