// Package history keeps a record of every build kiln ran: when, how long,
// with which options, its result or error, how many steps ran and how many
// came from the cache, and the whole progress log as `--progress plain`
// shows it. Records live in one directory per store and namespace (the
// engine names it) and are kept as buildkitd keeps its build history: the
// newest MaxEntries always, older ones until they are MaxAge old.
//
// Each build writes its own files, <ref>.json and <ref>.log.gz, the record
// by temporary file and rename, so that builds running side by side and
// readers never see half a record. A running build holds a lock on its log
// file; a record still marked running whose lock is free belongs to a kiln
// process that was killed, and reads as interrupted. The package returns
// data and typed errors; presenting them is the caller's.
package history

import (
	"fmt"
	"strings"
	"time"
)

// Status says how a build ended.
type Status string

// The statuses of a build.
const (
	// StatusRunning is a build that has not ended yet.
	StatusRunning Status = "running"
	// StatusCompleted is a build that succeeded.
	StatusCompleted Status = "completed"
	// StatusFailed is a build that failed.
	StatusFailed Status = "failed"
	// StatusInterrupted is a build stopped by a signal (SIGINT, SIGTERM),
	// or whose kiln process was killed before it could say how it ended.
	StatusInterrupted Status = "interrupted"
)

// Record describes one build.
type Record struct {
	// Ref identifies the build: 25 lower-case letters and digits, as
	// BuildKit names its builds; references sort as the builds started.
	Ref string `json:"ref"`
	// Command is kiln's command line, as typed, without the program name.
	Command []string `json:"command"`
	// Context is the build context directory and Dockerfile the Dockerfile,
	// as absolute paths (or "Dockerfile (stdin)").
	Context    string `json:"context"`
	Dockerfile string `json:"dockerfile"`
	// Target is the stage built; empty for the last one.
	Target string `json:"target,omitempty"`
	// Platforms are the platforms built; empty for the host's.
	Platforms []string `json:"platforms,omitempty"`
	// Names are the names the image was to be stored under.
	Names []string `json:"names,omitempty"`
	// Digest is the result's digest, once the build completed.
	Digest string `json:"digest,omitempty"`
	// Status says how the build ended.
	Status Status `json:"status"`
	// Error is the error the build failed with, as kiln printed it.
	Error string `json:"error,omitempty"`
	// Started and Ended are when the build started and ended; Ended is
	// zero while it runs.
	Started time.Time `json:"started"`
	Ended   time.Time `json:"ended,omitzero"`
	// Steps counts the build's steps, Completed those that finished and
	// Cached those that came from the build cache.
	Steps     int `json:"steps"`
	Completed int `json:"completed"`
	Cached    int `json:"cached"`
	// Warnings are the warnings the build reported (its Dockerfile's
	// check warnings), one line each.
	Warnings []string `json:"warnings,omitempty"`
	// PID is the kiln process that ran the build.
	PID int `json:"pid"`
}

// Duration is how long the build took, or has been running at now.
func (r Record) Duration(now time.Time) time.Duration {
	if r.Ended.IsZero() {
		return now.Sub(r.Started)
	}
	return r.Ended.Sub(r.Started)
}

// Limits bound the records kept, as buildkitd's history configuration
// does: a record is removed once it is neither among the latest MaxEntries
// builds nor ended less than MaxAge ago (so MaxAge 0 keeps exactly
// MaxEntries). MaxEntries 0 records nothing.
type Limits struct {
	MaxEntries int
	MaxAge     time.Duration
}

// DefaultLimits are buildkitd's defaults: 50 records, 48 hours.
var DefaultLimits = Limits{MaxEntries: 50, MaxAge: 48 * time.Hour}

// Enabled reports whether builds are recorded at all.
func (l Limits) Enabled() bool { return l.MaxEntries > 0 }

// Validate checks the limits a user gave.
func (l Limits) Validate() error {
	if l.MaxEntries < 0 {
		return fmt.Errorf("invalid history limit of %d records: use 0 (record nothing) or more", l.MaxEntries)
	}
	if l.MaxAge < 0 {
		return fmt.Errorf("invalid history age %s: use 0 (keep only the newest records) or more", l.MaxAge)
	}
	return nil
}

// NotFoundError says that no record matches a reference.
type NotFoundError struct {
	// Ref is the reference asked for; "" asked for the latest build.
	Ref string
}

func (e *NotFoundError) Error() string {
	if e.Ref == "" {
		return "no build recorded"
	}
	return fmt.Sprintf("no build %s recorded", e.Ref)
}

// AmbiguousError says that a reference's prefix matches several records.
type AmbiguousError struct {
	Ref string
	// Matches are the references of the records it matches.
	Matches []string
}

func (e *AmbiguousError) Error() string {
	return fmt.Sprintf("build reference %s matches %d builds (%s): give more of it", e.Ref, len(e.Matches), strings.Join(e.Matches, ", "))
}

// InvalidRefError says that a reference cannot name a build.
type InvalidRefError struct {
	Ref string
}

func (e *InvalidRefError) Error() string {
	return fmt.Sprintf("invalid build reference %q: use a build's reference (or the start of one), or ^N for the Nth build before the latest", e.Ref)
}
