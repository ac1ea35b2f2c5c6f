package store

import (
	"fmt"
	"slices"
	"strings"
)

// IncompleteError reports an image whose content is not all in the content
// store, for an operation that needs all of it: push, save, copy, and
// every operation that names an image (load, pull, tag, manifest create,
// a build result).
type IncompleteError struct {
	// Name is the image's stored name, or the name it was to get.
	Name string
	// Action is what could not be done: "push", "save", "copy", "load",
	// "pull", "tag", "add" (to a manifest list) or "store" (a build
	// result).
	Action string
	// Missing maps each platform (or "attestation for P", or "index") to
	// what it lacks, in the image's order.
	Missing []MissingContent
	// Complete lists the platforms whose content is complete.
	Complete []string
}

// MissingContent is what one platform of an image lacks.
type MissingContent struct {
	Platform string
	Blobs    []Blob
}

func (e *IncompleteError) Error() string {
	parts := make([]string, len(e.Missing))
	for i, m := range e.Missing {
		parts[i] = fmt.Sprintf("%s (%s)", m.Platform, describeBlobs(m.Blobs))
	}
	msg := fmt.Sprintf("image %s is missing content for %s", e.Name, strings.Join(parts, ", "))
	if e.Action == "load" {
		// The content can only come from the archive.
		msg += "; the archive lacks it, or holds a blob whose content does not match its digest: no image was loaded and no name changed"
	}
	return msg
}

// Refetch lists the platforms whose content a pull of just those platforms
// would restore, in order; it is empty when only the index or platforms
// the image does not name lack content, which only a pull of every
// platform restores.
func (e *IncompleteError) Refetch() []string {
	var pull []string
	for _, m := range e.Missing {
		p, ok := strings.CutPrefix(m.Platform, "attestation for ")
		if !ok && (m.Platform == "index" || m.Platform == "unknown") {
			continue
		}
		if !slices.Contains(pull, p) {
			pull = append(pull, p)
		}
	}
	return pull
}

// describeBlobs names up to three missing blobs: "layer sha256:0123456789ab".
func describeBlobs(blobs []Blob) string {
	const show = 3
	var parts []string
	for i, b := range blobs {
		if i == show {
			parts = append(parts, fmt.Sprintf("and %d more", len(blobs)-show))
			break
		}
		parts = append(parts, fmt.Sprintf("%s %s", b.Kind, shortBlobDigest(b)))
	}
	if len(parts) == 0 {
		return "nothing missing"
	}
	return strings.Join(parts, ", ") + " not present"
}

func shortBlobDigest(b Blob) string {
	if b.Digest.Validate() != nil {
		return b.Digest.String()
	}
	// 12 hex digits, as docker shows IDs.
	enc := b.Digest.Encoded()
	return b.Digest.Algorithm().String() + ":" + enc[:min(12, len(enc))]
}

// incomplete returns an *IncompleteError when the chosen platforms (all
// of the image when chosen is nil) or the attestations going with them
// lack content, nil otherwise.
func (sum ImageSummary) incomplete(action string, chosen []PlatformSummary) error {
	return sum.incompleteIn(action, chosen, chosen == nil)
}

// incompleteIn is incomplete, with missing index blobs counted when
// withIndex is set even if only some platforms are chosen.
func (sum ImageSummary) incompleteIn(action string, chosen []PlatformSummary, withIndex bool) error {
	all := chosen == nil
	if all {
		chosen = sum.Platforms
	}
	e := &IncompleteError{Name: sum.Name, Action: action}
	if withIndex && len(sum.Missing) > 0 {
		e.Missing = append(e.Missing, MissingContent{Platform: "index", Blobs: sum.Missing})
	}
	byDigest := map[string]string{}
	for _, p := range chosen {
		byDigest[p.Digest.String()] = p.Platform
		if p.Content != ContentComplete {
			e.Missing = append(e.Missing, MissingContent{Platform: p.Platform, Blobs: p.Missing})
		}
	}
	for _, a := range sum.Attestations {
		plat, ok := byDigest[a.For.String()]
		if !ok && !all {
			continue
		}
		if a.Content != ContentComplete {
			if plat == "" {
				plat = "unknown"
			}
			e.Missing = append(e.Missing, MissingContent{Platform: "attestation for " + plat, Blobs: a.Missing})
		}
	}
	if len(e.Missing) == 0 {
		return nil
	}
	for _, p := range sum.Platforms {
		if p.Content == ContentComplete && p.Platform != "unknown" {
			e.Complete = append(e.Complete, p.Platform)
		}
	}
	return e
}
