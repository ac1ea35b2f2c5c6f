// Package safeio reads the files a user names on kiln's command line and
// writes the files kiln outputs, so that neither can hang kiln, exhaust its
// memory or leave a half-written file behind.
//
// Reads (ReadFile, ReadAll) accept only regular files, opened without
// blocking on a named pipe, stop at a limit, and return as soon as their
// context ends. Writes (Create, WriteFile) go to a temporary file beside
// the target, named with TempPrefix, that replaces the target only when
// complete (see write.go).
//
// It is a leaf: it imports nothing of kiln.
package safeio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"

	units "github.com/docker/go-units"
)

// ErrInterrupted is wrapped by the errors of reads whose context ended
// first: kiln was told to stop (SIGINT, SIGTERM) while waiting for input.
var ErrInterrupted = errors.New("interrupted")

// NotRegularError is the error for a path that names something other than
// a regular file (a named pipe, a device, a socket, a directory) where kiln
// needs a file.
type NotRegularError struct {
	Path string
	Mode fs.FileMode
}

func (e *NotRegularError) Error() string {
	return fmt.Sprintf("%s is %s, not a regular file", e.Path, Kind(e.Mode))
}

// TooLargeError is the error for input over its limit.
type TooLargeError struct {
	// Name is the path, or a description such as "standard input".
	Name  string
	Limit int64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("%s is larger than %s, the most kiln reads", e.Name, FormatSize(e.Limit))
}

// FormatSize formats a limit in binary units, as "16 MiB".
func FormatSize(n int64) string {
	return units.BytesSize(float64(n))
}

// Kind describes the type of a file for messages: "a named pipe",
// "a character device", ...
func Kind(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "a regular file"
	case m.IsDir():
		return "a directory"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	}
	return "not a regular file"
}

// OpenRegular opens path for reading, following symbolic links, and
// refuses anything but a regular file. A named pipe does not block the
// open: it is opened non-blocking, recognised and closed. A missing file
// gives an error wrapping fs.ErrNotExist.
func OpenRegular(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, &NotRegularError{Path: path, Mode: fi.Mode()}
	}
	// O_NONBLOCK means nothing to a regular file; reads stay plain reads.
	return f, nil
}

// CheckRegular reports, without opening it, whether path (following
// symbolic links) is a regular file, for paths that something else opens
// later. A missing file gives an error wrapping fs.ErrNotExist.
func CheckRegular(path string) (fs.FileInfo, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, &NotRegularError{Path: path, Mode: fi.Mode()}
	}
	return fi, nil
}

// ReadFile reads the regular file at path, refusing one larger than limit
// bytes before reading it (and reading no more than limit+1 bytes should
// it grow). It returns when ctx ends, with an error wrapping
// ErrInterrupted.
func ReadFile(ctx context.Context, path string, limit int64) ([]byte, error) {
	f, err := OpenRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > limit {
		return nil, &TooLargeError{Name: path, Limit: limit}
	}
	return ReadAll(ctx, f, path, limit)
}

// ReadAll reads r to its end, refusing more than limit bytes; name says
// what r is in errors ("standard input"). It returns when ctx ends, with
// an error wrapping ErrInterrupted: the read blocked in r is left behind,
// as nothing can cancel it, so use ReadAll only where kiln exits soon
// after an interruption.
func ReadAll(ctx context.Context, r io.Reader, name string, limit int64) ([]byte, error) {
	type result struct {
		data []byte
		err  error
	}
	done := make(chan result, 1)
	go func() {
		data, err := io.ReadAll(io.LimitReader(r, limit+1))
		done <- result{data, err}
	}()
	select {
	case res := <-done:
		switch {
		case res.err != nil:
			return nil, res.err
		case int64(len(res.data)) > limit:
			return nil, &TooLargeError{Name: name, Limit: limit}
		}
		return res.data, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%w while reading %s", ErrInterrupted, name)
	}
}

// Open opens path for reading as os.Open does, waiting as long as it must
// for a named pipe's writer, but returning when ctx ends first (with an
// error wrapping ErrInterrupted). For inputs that may rightly be a pipe,
// such as an archive to load.
func Open(ctx context.Context, path string) (*os.File, error) {
	type result struct {
		f   *os.File
		err error
	}
	done := make(chan result, 1)
	go func() {
		f, err := os.Open(path)
		done <- result{f, err}
	}()
	select {
	case res := <-done:
		return res.f, res.err
	case <-ctx.Done():
		go func() {
			// The open may still succeed once a writer comes.
			if res := <-done; res.f != nil {
				res.f.Close()
			}
		}()
		return nil, fmt.Errorf("%w while opening %s", ErrInterrupted, path)
	}
}

// Interruptible returns a reader of r whose reads end when ctx does, with
// an error wrapping ErrInterrupted; name says what r is in that error. A
// read blocked in r itself (a silent pipe, a terminal) cannot be cancelled
// and is left behind, so use it where kiln exits soon after. Close it when
// done.
func Interruptible(ctx context.Context, r io.Reader, name string) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		_, err := io.Copy(pw, r)
		pw.CloseWithError(err)
	}()
	// Closing the pipe's read end unblocks a Read waiting for data.
	stop := context.AfterFunc(ctx, func() { pr.Close() })
	return &interruptible{pr: pr, stop: stop, ctx: ctx, name: name}
}

type interruptible struct {
	pr   *io.PipeReader
	stop func() bool
	ctx  context.Context
	name string
}

func (i *interruptible) Read(p []byte) (int, error) {
	n, err := i.pr.Read(p)
	if err != nil && i.ctx.Err() != nil {
		err = fmt.Errorf("%w while reading %s", ErrInterrupted, i.name)
	}
	return n, err
}

func (i *interruptible) Close() error {
	i.stop()
	return i.pr.Close()
}
