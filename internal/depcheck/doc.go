// Package depcheck holds no code: its test keeps kiln's import rules true
// (docs/architecture.md), failing when a package reaches into a room it must
// not, as go-containerregistry's depcheck does for crane.
package depcheck
