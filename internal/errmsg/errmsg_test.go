package errmsg

import (
	"errors"
	"io/fs"
	"testing"
)

func TestNew(t *testing.T) {
	cause := &fs.PathError{Op: "open", Path: "/x", Err: fs.ErrNotExist}
	err := New("no such image", cause)
	if err.Error() != "no such image" {
		t.Errorf("Error() = %q", err)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Error("errors.Is does not reach the cause")
	}
	var pe *fs.PathError
	if !errors.As(err, &pe) || pe != cause {
		t.Error("errors.As does not reach the cause")
	}
	if errors.Unwrap(err) != cause {
		t.Error("Unwrap does not return the cause")
	}
}

func TestJoin(t *testing.T) {
	a, b := errors.New("a"), &fs.PathError{Op: "open", Path: "/x", Err: fs.ErrNotExist}
	err := Join(a, nil, b)
	if err.Error() != "a; open /x: file does not exist" {
		t.Errorf("Join message %q", err)
	}
	var pe *fs.PathError
	if !errors.Is(err, a) || !errors.Is(err, fs.ErrNotExist) || !errors.As(err, &pe) {
		t.Errorf("Join hides its errors: %v", err)
	}
	if Join(nil, a) != a {
		t.Error("Join of one error does not return it")
	}
	if Join() != nil || Join(nil, nil) != nil {
		t.Error("Join of no errors is not nil")
	}
}

func TestNewNilCause(t *testing.T) {
	err := New("plain", nil)
	if err.Error() != "plain" || errors.Unwrap(err) != nil {
		t.Errorf("nil cause: %q, %v", err, errors.Unwrap(err))
	}
}
