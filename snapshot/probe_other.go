//go:build !linux

package snapshot

import "errors"

// KernelRelease returns "unknown" off Linux.
func KernelRelease() string { return "unknown" }

// FuseInstalled reports false off Linux.
func FuseInstalled() bool { return false }

// Default is overlayfs, containerd's default.
func Default(rootless bool) string { return Overlayfs }

// ProbeOverlay fails off Linux, which has no overlayfs.
func ProbeOverlay(dir string) error { return errors.New("overlayfs needs Linux") }
