package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

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
				Usage: "list the configured nodes: address, transport (plaintext: unencrypted), reachable or not, BuildKit version, platforms",
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
	ns, err := nodes.LoadDefault(c.Context)
	if err != nil {
		return err
	}
	if len(ns) == 0 {
		fmt.Fprintf(c.App.ErrWriter, "no nodes configured: add them to %s (see docs/nodes.md)\n", strings.Join(nodes.DefaultFiles(), " or "))
		return nil
	}
	sts := nodes.ProbeAll(c.Context, ns)
	if asJSON {
		return writeJSONLines(c.App.Writer, sts)
	}
	return writeNodeTable(c.App.Writer, sts)
}

func runNodeInspect(c *cli.Context) error {
	if c.NArg() != 1 {
		return usageErrorf("\"kiln node inspect\" needs exactly one node name; list them with \"kiln node ls\"")
	}
	ns, err := nodes.LoadDefault(c.Context)
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

// writeNodeTable writes statuses as "kiln node ls" shows them: one row per
// node, then the reason of each node that did not answer and what to do
// about each unencrypted node that builds refuse.
func writeNodeTable(w io.Writer, sts []nodes.Status) error {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, "NAME\tADDRESS\tTRANSPORT\tSTATUS\tBUILDKIT\tPLATFORMS")
	var reasons []string
	for _, s := range sts {
		transport := s.Transport
		if s.Node.Plaintext() {
			transport = "plaintext (refused)"
			if s.Node.InsecurePlaintext {
				transport = "plaintext (accepted)"
			}
		}
		status, version, plats := "reachable", s.BuildKit, strings.Join(s.Platforms, ",")
		if !s.Reachable {
			status, version, plats = "unreachable", "-", strings.Join(s.Node.Restricted(), ",")
			reasons = append(reasons, fmt.Sprintf("%s: %s", s.Node.Name, s.Error))
		}
		if s.Restricted {
			plats += " (configured)"
		}
		if plats == "" {
			plats = "-"
		}
		if version == "" {
			version = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.Node.Name, s.Node.Address, transport, status, version, plats)
	}
	for _, s := range sts {
		if err := s.Node.CheckTransport(); err != nil {
			reasons = append(reasons, err.Error())
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range reasons {
		fmt.Fprintln(w, r)
	}
	return nil
}
