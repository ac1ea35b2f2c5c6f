//go:build !linux

package emulation

import (
	"context"
	"errors"

	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
)

// errNotLinux is returned everywhere but on Linux: binfmt_misc is Linux's.
var errNotLinux = errors.New("emulation through binfmt_misc needs Linux")

// DefaultBinfmtDir is where binfmt_misc is mounted on Linux systems.
const DefaultBinfmtDir = "/proc/sys/fs/binfmt_misc"

// Status is not available outside Linux.
func Status(context.Context) ([]PlatformStatus, error) { return nil, errNotLinux }

// Install is not available outside Linux.
func Install(context.Context, []ocispecs.Platform) ([]Action, error) { return nil, errNotLinux }

// Uninstall is not available outside Linux.
func Uninstall(context.Context, []ocispecs.Platform) ([]Action, error) { return nil, errNotLinux }

// Ensure is not available outside Linux.
func Ensure(context.Context, []ocispecs.Platform, bool) (Report, error) {
	return Report{}, errNotLinux
}

// BinfmtDir returns DefaultBinfmtDir.
func BinfmtDir() string { return DefaultBinfmtDir }

// InUserNamespace is false outside Linux.
func InUserNamespace() bool { return false }

// ReadHandlers is not available outside Linux.
func ReadHandlers(string) ([]Handler, bool, error) { return nil, false, errNotLinux }

var interpretersMustBeRootOnly = func() bool { return false }

func checkRootOnly(string) error { return nil }
