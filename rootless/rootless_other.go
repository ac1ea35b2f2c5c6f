//go:build !linux

package rootless

// Find reports that there is no rootless containerd: RootlessKit runs only
// on Linux.
func Find() (*Kit, error) {
	return nil, &NotRunningError{User: userName(), StateDir: StateDir()}
}

// Joined reports false: there are no RootlessKit namespaces to join.
func (k *Kit) Joined() bool { return false }

// Enter does nothing: rootless containerd runs only on Linux.
func Enter() error { return nil }

// Check reports nothing: rootless containerd runs only on Linux.
func Check() []error { return nil }
