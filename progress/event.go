package progress

import "time"

// Phase names a stage of a conversion.
type Phase string

// The phases a conversion goes through, in order.
const (
	// PhaseResolve is the lookup of the reference, manifest and config.
	PhaseResolve Phase = "resolve"
	// PhaseDownload is the transfer of one compressed layer blob.
	PhaseDownload Phase = "download"
	// PhaseLocal takes the place of [PhaseDownload] for a layer whose blob needs none: the
	// blob of a local source ("oci:", "oci-archive:", "docker-archive:"), read in place
	// while the layer applies. It is reported once per such layer, complete, with Done and
	// Total the blob's size and no speed: nothing was transferred.
	PhaseLocal Phase = "local"
	// PhaseApply is the decompression of one layer and its application to the sink. Its
	// Done and Total count the layer's uncompressed tar bytes, for every layer alike: Total
	// is known from the start when the layer was decompressed ahead, -1 while a layer
	// streaming from its blob is still being read, and equal to Done on the final event.
	PhaseApply Phase = "apply"
	// PhaseFinalize is the work done after the last layer (metadata, sync, rename).
	PhaseFinalize Phase = "finalize"
	// PhaseDone is reported once, when the whole conversion has finished.
	PhaseDone Phase = "done"
	// PhaseUpload is the transfer of an image to a registry (img2ext4 push): image-level
	// events (Layer -1) whose Done counts the image's bytes handled so far (chunks
	// uploaded, found in the registry already, or all zeros) out of Total, its size.
	PhaseUpload Phase = "upload"
	// PhaseWarning reports, as it happens, something the image carries that the output
	// cannot hold as given and that was dropped, skipped or changed; [Event.Warning] says
	// what. It is no stage: it comes among the apply events.
	PhaseWarning Phase = "warning"
)

// Event is one progress report. Events are values: a callback may keep them.
type Event struct {
	// Phase is the stage this event belongs to.
	Phase Phase `json:"phase"`
	// Layer is the zero-based index of the layer the event concerns, or -1 when it concerns none.
	Layer int `json:"layer"`
	// Layers is the number of layers in the image, or 0 when not yet known.
	Layers int `json:"layers"`
	// Digest is the layer's compressed digest, when the event concerns a layer.
	Digest string `json:"digest,omitempty"`
	// Done is the number of bytes processed so far in this phase for this layer, in the
	// phase's one unit: [PhaseDownload] counts bytes of the layer's compressed blob as
	// fetched, [PhaseApply] bytes of its uncompressed tar stream (what the layer's DiffID
	// hashes), for every layer alike.
	Done int64 `json:"done"`
	// Total is the number of bytes this phase will count for this layer, in the same unit
	// as Done, or -1 when unknown (an apply phase knows it only for a layer that was
	// decompressed ahead; a download knows the blob's size from its descriptor).
	Total int64 `json:"total"`
	// BytesPerSec is the average speed of this phase for this layer so far, in Done's unit.
	BytesPerSec float64 `json:"bytes_per_sec"`
	// Complete is true on the last event of a phase for a layer.
	Complete bool `json:"complete,omitempty"`
	// Elapsed is the time since this phase started for this layer.
	Elapsed time.Duration `json:"elapsed_ns"`
	// Warning says what a [PhaseWarning] event is about; it is nil on other events.
	Warning *Warning `json:"warning,omitempty"`
	// Retries counts the registry requests of this phase for this layer that
	// were retried so far; an event is reported at each retry.
	Retries int `json:"retries,omitempty"`
	// Retry is why the latest retry was needed, when Retries is not zero.
	Retry string `json:"retry,omitempty"`
}

// Warning is an attribute or entry dropped, skipped or changed during the merge.
type Warning struct {
	// Path is the entry's name as the layer gave it; [Event.Digest] names the layer.
	Path string `json:"path"`
	// Attr is the extended attribute's name, or "" when the whole entry is concerned.
	Attr string `json:"attr,omitempty"`
	// Action is "dropped", "skipped" or "changed".
	Action string `json:"action"`
	// Reason says why, in words.
	Reason string `json:"reason"`
}

// Func receives progress events; nil means progress is off.
//
// A Func is called synchronously from the goroutine doing the work, so it must return
// quickly and must not block. Whether calls may overlap is up to the caller, and each
// package that takes a Func says so: [github.com/img2ext4/img2ext4.WithProgress] serializes
// every call of a conversion, so a Func given there needs no locking; [Renderer.Func] and
// [Tracker.Func] are safe for concurrent use anyway, so they may be given to several
// reporters at once.
type Func func(Event)
