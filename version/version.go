// Package version holds kiln's build-time version information.
package version

// Version is kiln's version, set at link time with
// -ldflags "-X github.com/kiln-build/kiln/version.Version=...".
var Version = "dev"
