// Package fuzz holds cross-package fuzz targets: properties that only hold when several
// packages agree. FuzzMerge converts generated multi-layer images into all three outputs
// and checks each against a reference model of the OCI merge rules (model_test.go) that
// shares no code with layerapply or whiteout; FuzzDescriptors checks descriptors against
// the documents they describe. The targets live in its tests; their seed corpora run with
// the normal go test.
//
// run.sh runs campaigns of any target of the module one after another and keeps their new
// corpus entries in testdata; RESULTS.md records what campaigns ran and found.
package fuzz
