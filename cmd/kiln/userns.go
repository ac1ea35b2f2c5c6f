package main

import (
	"os"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/kiln-build/kiln/rootless"
	"github.com/kiln-build/kiln/store"
)

// exitStatus ends kiln with a status and no message: the status of kiln
// run again in its own namespaces, which has said what there was to say.
type exitStatus int

func (e exitStatus) Error() string { return "exit status " + strconv.Itoa(int(e)) }

// ownNamespaces runs the command again in a user and mount namespace of
// kiln's own (see rootless.RunInOwnNamespaces) when an unprivileged user's
// kiln uses the embedded store: there it can mount snapshots and run build
// steps. Commands that do not open the store (emulation, version, help)
// run as they are.
func ownNamespaces(c *cli.Context) error {
	if !rootless.Parent() || c.NArg() == 0 {
		return nil
	}
	cmd := findCommand(c.App.Commands, c.Args().First())
	if cmd == nil || cmd.Name == "version" || cmd.Name == "emulation" || cmd.Name == "help" {
		return nil
	}
	for _, a := range c.Args().Slice() {
		if a == "-h" || a == "--help" {
			return nil
		}
	}
	cfg := engineConfig(c)
	sel, err := store.Select(cfg.Store, cfg.Address, cfg.AddressSet)
	if err != nil || !sel.Embedded() {
		return nil // the command reports a bad --store itself
	}
	code, err := rootless.RunInOwnNamespaces()
	if err != nil {
		return err
	}
	return exitStatus(code)
}

// embeddedChosen reports whether the command line or KILN_STORE asks for
// the embedded store, which an unprivileged user's kiln uses in namespaces
// of its own rather than in those of their rootless containerd.
func embeddedChosen(args []string) bool {
	chosen := os.Getenv("KILN_STORE") == store.KindEmbedded
	for i := 1; i < len(args); i++ {
		switch a := args[i]; {
		case a == "--":
			return chosen
		case a == "--store" || a == "-store":
			if i+1 < len(args) {
				chosen = args[i+1] == store.KindEmbedded
				i++
			}
		case strings.HasPrefix(a, "--store=") || strings.HasPrefix(a, "-store="):
			chosen = strings.SplitN(a, "=", 2)[1] == store.KindEmbedded
		}
	}
	return chosen
}
