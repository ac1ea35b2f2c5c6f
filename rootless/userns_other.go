//go:build !linux

package rootless

import "errors"

// RunInOwnNamespaces fails off Linux, which alone has user namespaces.
func RunInOwnNamespaces() (int, error) {
	return 0, errors.New("kiln builds without root only on Linux")
}

// FinishOwnNamespaces does nothing off Linux.
func FinishOwnNamespaces() error { return nil }

// InOwnNamespaces reports whether this kiln runs in namespaces its parent
// made: never off Linux.
func InOwnNamespaces() bool { return false }
