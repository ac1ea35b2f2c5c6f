package safeio

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// TempPrefix starts the name of every temporary file kiln writes beside an
// output. A kiln killed with SIGKILL cannot remove its temporary file; one
// named so is kiln's, harmless, and safe to delete when no kiln runs.
const TempPrefix = ".kiln-tmp-"

// File is an output being written. For a regular file (or a path that does
// not exist yet) the data goes to a temporary file in the same directory,
// created exclusively with the mode the output will have; Commit flushes it
// to disk and renames it over the path, so the path holds either its old
// content or the whole new one, never a part. Close without Commit removes
// the temporary file.
//
// A path that is a character device or a named pipe (/dev/null,
// /dev/stdout) is written in place: there is nothing to replace. A named
// pipe no process reads from is refused rather than waited for.
type File struct {
	f      *os.File
	path   string
	temp   string // empty when written in place
	closed bool
}

// Create starts writing the output at path with permissions perm (less the
// umask) when it is new, or those of the regular file it replaces. The
// directory must exist. A directory, socket or block device at path is
// refused. A symbolic link at path is replaced by the output, not written
// through, unless it leads to a device or pipe (/dev/stdout).
func Create(path string, perm fs.FileMode) (*File, error) {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, err
	case fi.Mode().IsRegular():
		perm = fi.Mode().Perm()
	case fi.Mode()&fs.ModeNamedPipe != 0 || fi.Mode()&fs.ModeCharDevice != 0:
		return openInPlace(path)
	default:
		return nil, &NotRegularError{Path: path, Mode: fi.Mode()}
	}
	dir, base := filepath.Split(path)
	if len(base) > 64 {
		base = base[:64]
	}
	for range 100 {
		var b [6]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, err
		}
		temp := filepath.Join(dir, TempPrefix+base+"-"+hex.EncodeToString(b[:]))
		f, err := os.OpenFile(temp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if fi != nil {
			// The replaced file's mode, exactly: the umask does not apply
			// to a mode the user already chose.
			if err := f.Chmod(perm); err != nil {
				f.Close()
				os.Remove(temp)
				return nil, err
			}
		}
		return &File{f: f, path: path, temp: temp}, nil
	}
	return nil, fmt.Errorf("creating a temporary file beside %s: too many collisions", path)
}

func openInPlace(path string) (*File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0)
	if errors.Is(err, syscall.ENXIO) {
		return nil, fmt.Errorf("%s is a named pipe no process reads from", path)
	}
	if err != nil {
		return nil, err
	}
	return &File{f: f, path: path}, nil
}

// Name is the output's path.
func (f *File) Name() string { return f.path }

// TempName is the temporary file's path; empty when the output is written
// in place.
func (f *File) TempName() string { return f.temp }

// Write writes to the temporary file (or the device or pipe).
func (f *File) Write(p []byte) (int, error) { return f.f.Write(p) }

// Commit makes the output whole: the data is flushed to disk, then the
// temporary file replaces the path. After a failed Commit the path is as
// it was and the temporary file is gone.
func (f *File) Commit() error {
	if f.closed {
		return fmt.Errorf("writing %s: already closed", f.path)
	}
	f.closed = true
	if f.temp == "" {
		return f.f.Close()
	}
	err := f.f.Sync()
	if cerr := f.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.temp, f.path)
	}
	if err != nil {
		os.Remove(f.temp)
		return err
	}
	// The rename is durable once the directory is on disk too.
	if d, err := os.Open(filepath.Dir(f.path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// Close abandons an output that was not committed: the temporary file is
// removed and the path keeps its old content. After Commit it does nothing.
func (f *File) Close() error {
	if f.closed {
		return nil
	}
	f.closed = true
	err := f.f.Close()
	if f.temp != "" {
		if rerr := os.Remove(f.temp); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			err = rerr
		}
	}
	return err
}

// WriteFile writes data to path as Create and Commit do: whole or not at all.
func WriteFile(path string, data []byte, perm fs.FileMode) error {
	return WriteWith(path, perm, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// WriteWith writes path with write, as Create and Commit do: the output
// replaces path only when write returns nil.
func WriteWith(path string, perm fs.FileMode, write func(io.Writer) error) error {
	f, err := Create(path, perm)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := write(f); err != nil {
		return err
	}
	return f.Commit()
}
