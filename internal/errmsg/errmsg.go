// Package errmsg is kiln's one error type for "show this message, keep
// that cause": the message a user reads differs from the cause's text (a
// plainer sentence, a hint, several errors on one line), while errors.Is
// and errors.As still reach the cause.
package errmsg

import (
	"errors"
	"regexp"
	"strings"
	"sync"
)

// New returns an error whose Error() is msg and whose Unwrap() is cause.
// Use fmt.Errorf("...: %w", cause) when the message may simply end with
// the cause's text; use New when it must not.
func New(msg string, cause error) error {
	return &msgError{msg: msg, cause: cause}
}

type msgError struct {
	msg   string
	cause error
}

func (e *msgError) Error() string { return e.msg }

func (e *msgError) Unwrap() error { return e.cause }

// Join is errors.Join for messages a user reads: the errors' messages on
// one line, separated by "; ", rather than errors.Join's one per line.
// Nil errors are dropped; no errors give nil and one error is returned as
// it is.
func Join(errs ...error) error {
	var kept []error
	var msgs []string
	for _, err := range errs {
		if err != nil {
			kept = append(kept, err)
			msgs = append(msgs, err.Error())
		}
	}
	switch len(kept) {
	case 0:
		return nil
	case 1:
		return kept[0]
	}
	return New(strings.Join(msgs, "; "), errors.Join(kept...))
}

// Pattern is a regular expression over error messages, compiled on first
// use: kiln's patterns are needed only when something fails, so compiling
// them when a package is initialised would cost every kiln process.
func Pattern(expr string) func() *regexp.Regexp {
	return sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(expr) })
}
