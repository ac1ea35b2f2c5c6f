package history

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/moby/buildkit/identity"

	"github.com/kiln-build/kiln/internal/owned"
	"github.com/kiln-build/kiln/internal/safeio"
)

const (
	recordSuffix = ".json"
	logSuffix    = ".log.gz"
	// maxRecordSize bounds the record files read: kiln writes a few
	// kilobytes (the command line, the error), never this much.
	maxRecordSize = 4 << 20
)

// validRef reports whether ref can be a record's reference: the names of
// its files derive from it, so it must be a plain file name part.
func validRef(ref string) bool {
	if ref == "" || len(ref) > 64 {
		return false
	}
	for _, c := range ref {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func recordPath(dir, ref string) string { return filepath.Join(dir, ref+recordSuffix) }
func logPath(dir, ref string) string    { return filepath.Join(dir, ref+logSuffix) }

// isTempRecord reports whether name is a record's temporary file, as
// safeio names the file it writes before the rename.
func isTempRecord(name string) bool {
	rest, ok := strings.CutPrefix(name, safeio.TempPrefix)
	if !ok {
		return false
	}
	ref, _, ok := strings.Cut(rest, recordSuffix+"-")
	return ok && validRef(ref)
}

// List returns the records in dir, the latest first (by start). A record
// left running by a kiln process that no longer holds its lock reads as
// interrupted. Unreadable records are left out; a missing dir has none.
func List(dir string) ([]Record, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the build history in %s: %w", dir, err)
	}
	var out []Record
	for _, ent := range entries {
		ref, ok := strings.CutSuffix(ent.Name(), recordSuffix)
		if !ok || !validRef(ref) {
			continue
		}
		rec, err := read(dir, ref)
		if err != nil {
			// Removed meanwhile, or damaged (a power cut while it was
			// written): nothing to show.
			continue
		}
		out = append(out, rec)
	}
	slices.SortStableFunc(out, func(a, b Record) int { return b.Started.Compare(a.Started) })
	return out, nil
}

// read reads one record.
func read(dir, ref string) (Record, error) {
	dt, err := safeio.ReadFile(context.Background(), recordPath(dir, ref), maxRecordSize)
	if err != nil {
		return Record{}, err
	}
	var rec Record
	if err := json.Unmarshal(dt, &rec); err != nil {
		return Record{}, fmt.Errorf("reading build record %s: %w", ref, err)
	}
	if rec.Ref != ref {
		return Record{}, fmt.Errorf("build record %s names itself %q", ref, rec.Ref)
	}
	if rec.Status == StatusRunning && !lockHeld(logPath(dir, ref)) {
		rec.Status = StatusInterrupted
		rec.Error = fmt.Sprintf("kiln (pid %d) ended before the build did: it was killed", rec.PID)
	}
	return rec, nil
}

// Find returns the record ref names: a reference or its unique start,
// "" for the latest build, or ^N for the Nth before the latest (^0 is the
// latest), as buildx's history commands take them.
func Find(dir, ref string) (Record, error) {
	if ref != "" && !strings.HasPrefix(ref, "^") && !validRef(ref) {
		return Record{}, &InvalidRefError{Ref: ref}
	}
	if validRef(ref) {
		// The common case, a whole reference, needs no listing.
		if rec, err := read(dir, ref); err == nil {
			return rec, nil
		}
	}
	recs, err := List(dir)
	if err != nil {
		return Record{}, err
	}
	if ref == "" || strings.HasPrefix(ref, "^") {
		n := 0
		if ref != "" {
			if n, err = strconv.Atoi(ref[1:]); err != nil || n < 0 {
				return Record{}, &InvalidRefError{Ref: ref}
			}
		}
		if n >= len(recs) {
			return Record{}, &NotFoundError{Ref: ref}
		}
		return recs[n], nil
	}
	var matches []Record
	for _, r := range recs {
		if strings.HasPrefix(r.Ref, ref) {
			matches = append(matches, r)
		}
	}
	switch len(matches) {
	case 0:
		return Record{}, &NotFoundError{Ref: ref}
	case 1:
		return matches[0], nil
	}
	refs := make([]string, len(matches))
	for i, m := range matches {
		refs[i] = m.Ref
	}
	return Record{}, &AmbiguousError{Ref: ref, Matches: refs}
}

// OpenLog opens the progress log of a record, decompressed. The log of a
// running build ends where its writer has got to.
func OpenLog(dir string, rec Record) (io.ReadCloser, error) {
	if !validRef(rec.Ref) {
		return nil, &InvalidRefError{Ref: rec.Ref}
	}
	f, err := safeio.OpenRegular(logPath(dir, rec.Ref))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("the progress log of build %s is gone: %w", rec.Ref, err)
	}
	if err != nil {
		return nil, fmt.Errorf("opening the progress log of build %s: %w", rec.Ref, err)
	}
	zr, err := gzip.NewReader(f)
	if errors.Is(err, io.EOF) {
		// A build that has not written a block yet.
		return io.NopCloser(strings.NewReader("")), f.Close()
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("reading the progress log of build %s: %w", rec.Ref, err)
	}
	return &logReader{zr: zr, f: f}, nil
}

// logReader ends a log cut short (a running or killed build) without an
// error: what was written is all there is.
type logReader struct {
	zr *gzip.Reader
	f  *os.File
}

func (l *logReader) Read(p []byte) (int, error) {
	n, err := l.zr.Read(p)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = io.EOF
	}
	return n, err
}

func (l *logReader) Close() error { return errors.Join(l.zr.Close(), l.f.Close()) }

// Remove removes the record ref names (as Find takes it) and its log, and
// returns the record removed. A running build's record is refused.
func Remove(dir, ref string) (Record, error) {
	rec, err := Find(dir, ref)
	if err != nil {
		return Record{}, err
	}
	if rec.Status == StatusRunning {
		return Record{}, fmt.Errorf("build %s is still running (kiln pid %d): remove it once it ended", rec.Ref, rec.PID)
	}
	if err := checkDir(dir); err != nil {
		return Record{}, err
	}
	return rec, remove(dir, rec.Ref)
}

// checkDir refuses to remove anything in dir unless it is the user's own
// directory, closed to others (see owned.Dir): in any other, a name could
// be a link or a file someone else put there.
func checkDir(dir string) error {
	if err := owned.Dir(dir); err != nil {
		return fmt.Errorf("removing build records in %s: %w", dir, err)
	}
	return nil
}

// remove deletes a record's files, the record first so that no record is
// ever without its log; files already gone are no error.
func remove(dir, ref string) error {
	for _, p := range []string{recordPath(dir, ref), logPath(dir, ref)} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing build record %s: %w", ref, err)
		}
	}
	return nil
}

// Prune removes the records limits no longer keep (see Limits), taking
// them by when they started, as their references sort, and the files of
// records that kiln processes killed while writing left behind. Records of
// running builds stay. It reads the directory's names and looks at no
// record it keeps, so that it costs a build little however many records a
// busy MaxAge holds.
func Prune(dir string, limits Limits, now time.Time) error {
	err := checkDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("reading the build history in %s: %w", dir, err)
	}
	// Names only, unsorted: the cheapest listing there is.
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return fmt.Errorf("reading the build history in %s: %w", dir, err)
	}
	var refs []string
	hasRecord := map[string]bool{}
	for _, name := range names {
		if ref, ok := strings.CutSuffix(name, recordSuffix); ok && validRef(ref) {
			refs = append(refs, ref)
			hasRecord[ref] = true
		}
	}
	var errs []error
	for _, name := range names {
		ref, isLog := strings.CutSuffix(name, logSuffix)
		orphan := isLog && validRef(ref) && !hasRecord[ref]
		temp := isTempRecord(name)
		if !orphan && !temp {
			continue
		}
		// A log without a record, or a record never renamed into place,
		// is left by a writer that was killed, unless it is being written
		// now: a writer holds its log's lock, and a temporary record lives
		// a moment.
		p := filepath.Join(dir, name)
		info, err := os.Lstat(p)
		if err != nil || now.Sub(info.ModTime()) < time.Minute {
			continue
		}
		if orphan && lockHeld(p) {
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if len(refs) <= limits.MaxEntries {
		return errors.Join(errs...)
	}
	// The latest first; then from the oldest on, while they are old.
	slices.SortFunc(refs, func(a, b string) int { return strings.Compare(b, a) })
	for i := len(refs) - 1; i >= limits.MaxEntries; i-- {
		ref := refs[i]
		fi, err := os.Stat(recordPath(dir, ref))
		if err != nil {
			continue // removed meanwhile
		}
		// A record's file is last written when its build ends.
		if limits.MaxAge > 0 && now.Sub(fi.ModTime()) < limits.MaxAge {
			break // the rest started later
		}
		if rec, err := read(dir, ref); err == nil && rec.Status == StatusRunning {
			continue
		}
		if err := remove(dir, ref); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// newRef names a build started at t: 25 lower-case letters and digits, as
// BuildKit names builds, whose first 11 are t's microseconds in base 36,
// so that references sort as the builds started, and the rest random.
func newRef(t time.Time) string {
	ts := strconv.FormatInt(t.UnixMicro(), 36)
	ts = strings.Repeat("0", max(0, 11-len(ts))) + ts
	return ts + identity.NewID()[:14]
}
