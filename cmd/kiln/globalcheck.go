package main

import (
	"github.com/containerd/containerd/v2/pkg/identifiers"
	"github.com/urfave/cli/v2"

	"github.com/kiln-build/kiln/usage"
)

// checkGlobals checks the global options every command shares, once and
// before any command runs, so that a bad value is the usage error (exit 2)
// it is whichever command meets it, and is refused even by commands that
// would not use it.
func checkGlobals(c *cli.Context) error {
	if ns := c.String("namespace"); identifiers.Validate(ns) != nil {
		return usage.Errorf("invalid --namespace %q: use letters, digits, '.', '_' and '-', starting and ending with a letter or digit, at most 76 characters", ns)
	}
	if err := gcOptions(c).Validate(); err != nil {
		return usage.Wrap(err)
	}
	return nil
}
