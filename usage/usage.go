// Package usage marks errors the user made on the command line, which kiln
// reports with exit code 2 as docker and nerdctl do.
package usage

import (
	"errors"
	"fmt"
)

// ExitCode is the exit status for a usage error.
const ExitCode = 2

// Error is a mistake in how kiln was called: a bad flag value, a missing
// argument, a path that does not exist.
type Error struct{ err error }

func (e *Error) Error() string { return e.err.Error() }

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.err }

// Errorf formats a usage error; %w wraps a cause as fmt.Errorf does.
func Errorf(format string, args ...any) error {
	return &Error{err: fmt.Errorf(format, args...)}
}

// Wrap marks err as a usage error; nil stays nil.
func Wrap(err error) error {
	if err == nil {
		return nil
	}
	return &Error{err: err}
}

// Is reports whether err is, or wraps, a usage error.
func Is(err error) bool {
	var u *Error
	return errors.As(err, &u)
}
