// Package fuzz holds cross-package fuzz targets: properties that only hold when several
// packages agree, such as every sink giving the same merged tree for the same layers.
// The targets live in its tests; their seed corpora run with the normal go test.
// run.sh runs campaigns of any target of the module one after another and keeps their new
// corpus entries in testdata; RESULTS.md records what campaigns ran and found.
package fuzz
