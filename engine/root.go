package engine

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/kiln-build/kiln/internal/owned"
)

// rootMarker is the file that makes a directory kiln's state directory. kiln
// removes and clears things only under a --root that holds it: the
// temporary directory tmp/ (emptied by every process that opens the root),
// the build state of killed processes, an earlier kiln's build cache. A
// directory of the user's that was named with --root by mistake ($HOME, /)
// has no marker, so kiln refuses it instead of emptying its tmp/.
const rootMarker = ".kiln-root"

// markerHeader starts the marker's first line; a random ID follows it.
const markerHeader = "kiln-root 1 "

// markerNote is the marker's second line, for whoever finds the file.
const markerNote = "# kiln's state directory (--root): kiln creates, clears and removes files in it. See SECURITY.md.\n"

// claimRoot makes sure that root is kiln's own state directory before
// anything is created, cleared or removed in it, creates it when it is
// missing, and returns its real path (absolute, without symbolic links),
// which the caller uses from then on: the checks hold for that path.
//
// root must be a directory owned by the user kiln runs as and not writable
// by group or others, below directories only root and the user can change
// (see owned.Above), since anyone else who can write it, or swap it for a
// link, chooses what kiln deletes and runs there; and it must hold kiln's
// marker. A directory without one gets it when kiln made the directory just
// now, when it is empty, or when it holds only what an earlier kiln (before
// the marker) made: kiln.lock and kiln's other names (see notKilns). Any
// other directory is refused, whatever it holds.
func claimRoot(root string) (string, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return "", fmt.Errorf("resolving kiln's state directory %s: %w", root, err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return "", &RootError{Msg: fmt.Sprintf("creating kiln's state directory %s: %v", root, err), Fix: RootFixAnother, Err: err}
	}
	// Where root is (or where its link is), before anything is made there.
	parent, err := filepath.EvalSymlinks(filepath.Dir(abs))
	if err != nil {
		return "", &RootError{Msg: fmt.Sprintf("resolving kiln's state directory %s: %v", root, err), Fix: RootFixAnother, Err: err}
	}
	if err := above(root, filepath.Join(parent, filepath.Base(abs))); err != nil {
		return "", err
	}
	created := false
	if err := os.Mkdir(abs, 0o700); err == nil {
		created = true
	} else if !errors.Is(err, fs.ErrExist) {
		return "", &RootError{Msg: fmt.Sprintf("creating kiln's state directory %s: %v", root, err), Fix: RootFixAnother, Err: err}
	}
	// A --root that is a symbolic link (to another disk, say) is checked,
	// and used, where it leads.
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return "", &RootError{Msg: fmt.Sprintf("resolving kiln's state directory %s: %v", root, err), Fix: RootFixAnother, Err: err}
	}
	if err := owned.Dir(real); err != nil {
		return "", rootRefused(root, real, err)
	}
	if err := above(root, real); err != nil {
		return "", err
	}
	marked, err := hasMarker(real)
	if err != nil {
		return "", err
	}
	if !marked {
		if !created {
			if why := notKilns(real); why != "" {
				return "", &RootError{Msg: fmt.Sprintf("%s is not kiln's state directory (no %s marker, and %s): kiln clears and removes files only in a directory it made", root, rootMarker, why), Fix: RootFixNewOrEmpty}
			}
		}
		if err := writeMarker(real); err != nil {
			return "", err
		}
	}
	return real, nil
}

// above checks the directories above path, the state directory root with
// links resolved (see owned.Above).
func above(root, path string) error {
	err := owned.Above(path)
	var oe *owned.Error
	switch {
	case err == nil:
		return nil
	case !errors.As(err, &oe):
		return fmt.Errorf("checking the directories above kiln's state directory %s: %w", root, err)
	}
	return &RootError{Msg: fmt.Sprintf("kiln's state directory %s is inside %s, which %s: another user could swap it for a link to files kiln would then remove", root, oe.Path, oe.Problem), Fix: RootFixAbove, Err: err}
}

// rootRefused says why the state directory root (real, with links
// resolved) cannot be kiln's, and what to do.
func rootRefused(root, real string, err error) error {
	var oe *owned.Error
	if !errors.As(err, &oe) {
		return fmt.Errorf("checking kiln's state directory %s: %w", root, err)
	}
	what := root
	if real != root {
		what = fmt.Sprintf("%s (%s)", root, real)
	}
	if oe.Kind == owned.Writable {
		return &RootError{Msg: fmt.Sprintf("kiln's state directory %s %s: another user could change what kiln removes and runs there; run \"chmod go-w %s\"", what, oe.Problem, real), Fix: RootFixOrNew, Err: err}
	}
	return &RootError{Msg: fmt.Sprintf("kiln's state directory %s %s: kiln only uses a state directory of its own user", what, oe.Problem), Fix: RootFixNew, Err: err}
}

// hasMarker reports whether dir holds kiln's marker. A marker kiln could
// not have written (a link, another user's file, other contents) is an
// error: the directory is then neither provably kiln's nor safe to claim.
func hasMarker(dir string) (bool, error) {
	path := filepath.Join(dir, rootMarker)
	err := owned.File(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err == nil {
		var b []byte
		if b, err = os.ReadFile(path); err == nil && !validMarker(string(b)) {
			err = errors.New("does not hold what kiln writes there")
		}
	}
	if err != nil {
		return false, &RootError{Msg: fmt.Sprintf("kiln's state directory marker %s is not kiln's: %v; remove it if the directory is kiln's", path, err), Fix: RootFixElseNew, Err: err}
	}
	return true, nil
}

// validMarker reports whether b is what writeMarker writes.
func validMarker(b string) bool {
	line, _, _ := strings.Cut(b, "\n")
	id, ok := strings.CutPrefix(line, markerHeader)
	if !ok || len(id) != 32 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil
}

// writeMarker writes kiln's marker, with a random ID, into dir: to a
// temporary file renamed into place, so that the marker is whole or absent.
func writeMarker(dir string) error {
	id := make([]byte, 16)
	rand.Read(id)
	f, err := os.CreateTemp(dir, rootMarker+".new-*")
	if err != nil {
		return fmt.Errorf("marking %s as kiln's state directory: %w", dir, err)
	}
	_, err = f.WriteString(markerHeader + hex.EncodeToString(id) + "\n" + markerNote)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(dir, rootMarker))
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("marking %s as kiln's state directory: %w", dir, err)
	}
	return nil
}

// kilnNames are the names a state directory of a kiln before the marker
// held; kilnPrefixes the name prefixes. lost+found is what a file system
// made for kiln's state alone (mounted at --root) holds from the start;
// kiln never touches it.
var (
	kilnNames    = []string{"kiln.lock", "tmp", stateSubdir, "store", "cache.db", "history.db", "lost+found"}
	kilnPrefixes = []string{containerdWorkerPrefix, embeddedWorkerPrefix, "overlay-probe-", rootMarker + ".new-"}
)

// notKilns says why dir, with no marker, does not look like a state
// directory an earlier kiln made; "" when it does, or when it is empty (or
// holds only lost+found) so that nothing in it can be lost. Every kiln made
// kiln.lock first, so what a directory without it holds is not kiln's.
func notKilns(dir string) string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "kiln cannot list it (" + err.Error() + ")"
	}
	lock := false
	for _, ent := range entries {
		name := ent.Name()
		if !isKilnName(name) {
			return "it holds " + name + ", which kiln does not make"
		}
		if name == "kiln.lock" {
			lock = owned.File(filepath.Join(dir, name)) == nil
		}
	}
	if lock {
		return ""
	}
	for _, ent := range entries {
		if ent.Name() != "lost+found" {
			return "it holds " + ent.Name() + " but no kiln.lock of kiln's, which every kiln makes first"
		}
	}
	return ""
}

func isKilnName(name string) bool {
	for _, n := range kilnNames {
		if name == n {
			return true
		}
	}
	for _, p := range kilnPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// RootFix says what a user can do about a state directory kiln refuses;
// cmd/kiln words it, naming the flag.
type RootFix int

// The ways out of a refused state directory.
const (
	RootFixAnother    RootFix = iota // choose another state directory
	RootFixNew                       // choose a new one, which kiln creates
	RootFixNewOrEmpty                // choose a new or empty one
	RootFixOrNew                     // or choose a new one (after the fix the message names)
	RootFixElseNew                   // else choose a new one
	RootFixAbove                     // choose one inside directories only root and the user can change
)

// RootError is a state directory kiln will not use or could not make.
type RootError struct {
	Msg string
	Fix RootFix
	Err error
}

func (e *RootError) Error() string { return e.Msg }
func (e *RootError) Unwrap() error { return e.Err }
