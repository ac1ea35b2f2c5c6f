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

// namespaceUse says where an unprivileged user's kiln runs a command.
type namespaceUse struct {
	// joinsContainerd: the command works with containerd, so kiln runs it
	// inside the namespaces of the user's rootless containerd
	// (rootless.Enter, from main) unless the embedded store is chosen.
	joinsContainerd bool
	// ownNamespaces: the command opens the store, so with the embedded
	// store kiln runs it in a user and mount namespace of its own, where it
	// can mount snapshots and run build steps (see ownNamespaces).
	ownNamespaces bool
}

// commandNamespaces is the one list of where each command runs for an
// unprivileged user; a command missing from it (help) runs where it is.
// emulation joins a rootless containerd's namespaces, to manage the
// handlers its builds see, but opens no store.
var commandNamespaces = map[string]namespaceUse{
	"build":     {joinsContainerd: true, ownNamespaces: true},
	"compose":   {joinsContainerd: true, ownNamespaces: true},
	"prune":     {joinsContainerd: true, ownNamespaces: true},
	"du":        {joinsContainerd: true, ownNamespaces: true},
	"emulation": {joinsContainerd: true},
	"images":    {joinsContainerd: true, ownNamespaces: true},
	"inspect":   {joinsContainerd: true, ownNamespaces: true},
	"tag":       {joinsContainerd: true, ownNamespaces: true},
	"rm":        {joinsContainerd: true, ownNamespaces: true},
	"pull":      {joinsContainerd: true, ownNamespaces: true},
	"push":      {joinsContainerd: true, ownNamespaces: true},
	"login":     {},
	"logout":    {},
	"manifest":  {joinsContainerd: true, ownNamespaces: true},
	"node":      {joinsContainerd: true, ownNamespaces: true},
	"save":      {joinsContainerd: true, ownNamespaces: true},
	"load":      {joinsContainerd: true, ownNamespaces: true},
	"info":      {joinsContainerd: true, ownNamespaces: true},
	"history":   {joinsContainerd: true, ownNamespaces: true},
	"version":   {},
}

// ownNamespaces runs the command again in a user and mount namespace of
// kiln's own (see rootless.RunInOwnNamespaces) when an unprivileged user's
// kiln uses the embedded store and the command opens it (see
// commandNamespaces).
func ownNamespaces(c *cli.Context) error {
	if !rootless.Parent() || c.NArg() == 0 {
		return nil
	}
	cmd := findCommand(c.App.Commands, c.Args().First())
	if cmd == nil || !commandNamespaces[cmd.Name].ownNamespaces {
		return nil
	}
	for _, a := range c.Args().Slice() {
		if a == "-h" || a == "--help" {
			return nil
		}
	}
	sel, err := engineConfig(c).Selection()
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
