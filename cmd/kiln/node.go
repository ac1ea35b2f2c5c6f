package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/kiln-build/kiln/nodes"
)

func nodeCommand() *cli.Command {
	return &cli.Command{
		Name:  "node",
		Usage: "the remote BuildKit nodes builds can send platforms to",
		Description: "Nodes are configured in " + nodes.SystemFile + " and $XDG_CONFIG_HOME/kiln/nodes.toml\n" +
			"(see docs/nodes.md); \"kiln build --node PLATFORM=ADDRESS\" names one for a single build.",
		Subcommands: usageErrors([]*cli.Command{
			{
				Name:  "ls",
				Usage: "list the configured nodes: address, reachable or not, BuildKit version, platforms",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "format", Value: "table", Usage: "output format: table or json (one object per line)"},
				},
				Action: runNodeLs,
			},
			{
				Name:      "inspect",
				Usage:     "ask one node (a configured NAME, or an ADDRESS) what it is: its BuildKit version, workers and platforms, as JSON",
				ArgsUsage: "NAME|ADDRESS",
				Action:    runNodeInspect,
			},
		}),
	}
}

func runNodeLs(c *cli.Context) error {
	asJSON, err := jsonFormat(c)
	if err != nil {
		return err
	}
	if c.NArg() > 0 {
		return usageErrorf("\"kiln node ls\" takes no arguments; inspect one node with \"kiln node inspect NAME\"")
	}
	ns, err := nodes.LoadDefault()
	if err != nil {
		return err
	}
	if len(ns) == 0 {
		fmt.Fprintf(c.App.ErrWriter, "no nodes configured: add them to %s (see docs/nodes.md)\n", strings.Join(nodes.DefaultFiles(), " or "))
		return nil
	}
	sts := nodes.ProbeAll(c.Context, ns)
	if asJSON {
		return nodes.WriteJSON(c.App.Writer, sts)
	}
	return nodes.WriteTable(c.App.Writer, sts)
}

func runNodeInspect(c *cli.Context) error {
	if c.NArg() != 1 {
		return usageErrorf("\"kiln node inspect\" needs exactly one node name; list them with \"kiln node ls\"")
	}
	ns, err := nodes.LoadDefault()
	if err != nil {
		return err
	}
	n, err := nodes.Lookup(ns, c.Args().First())
	if err != nil {
		return err
	}
	st := nodes.Probe(c.Context, n)
	if err := writeJSON(c.App.Writer, st); err != nil {
		return err
	}
	if !st.Reachable {
		return fmt.Errorf("node %s does not answer: %s; check that buildkitd runs there and listens on that address", n, st.Error)
	}
	return nil
}
