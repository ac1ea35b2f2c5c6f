package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/urfave/cli/v2"

	"github.com/kiln-build/kiln/emulation"
	"github.com/kiln-build/kiln/usage"
)

func emulationCommand() *cli.Command {
	return &cli.Command{
		Name:  "emulation",
		Usage: "show, install and remove the QEMU handlers that run foreign-architecture build steps",
		Description: "Foreign-architecture steps run under QEMU through binfmt_misc handlers. As root the\n" +
			"handlers are registered on the host; in a user namespace kiln owns (Linux 6.7 or newer)\n" +
			"they are registered in that namespace only. QEMU comes from the qemu-user-static package.",
		Subcommands: []*cli.Command{
			{
				Name:  "ls",
				Usage: "list each platform kiln builds for and whether it runs here: native, emulated, installable or unavailable",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "format", Value: "table", Usage: "output format: table or json"},
				},
				Action: runEmulationLs,
			},
			{
				Name:      "install",
				Usage:     "register QEMU handlers (flags FP) for platforms that do not run yet",
				ArgsUsage: "PLATFORM... | all",
				Action:    changeEmulation("install", emulation.Install),
			},
			{
				Name:      "uninstall",
				Usage:     "remove QEMU's handlers for platforms (only handlers named qemu-* whose interpreter is QEMU)",
				ArgsUsage: "PLATFORM... | all",
				Action:    changeEmulation("uninstall", emulation.Uninstall),
			},
		},
	}
}

func runEmulationLs(c *cli.Context) error {
	asJSON, err := jsonFormat(c)
	if err != nil {
		return err
	}
	if c.NArg() > 0 {
		return usage.Errorf("\"kiln emulation ls\" takes no arguments")
	}
	st, err := emulation.Status(c.Context)
	if err != nil {
		return err
	}
	for i, s := range st {
		if s.State == emulation.StateInstallable {
			st[i].Note += fmt.Sprintf("; run %q", installCommand([]string{s.Platform}, s.NeedsRoot))
		}
	}
	if asJSON {
		return writeJSON(c.App.Writer, st)
	}
	return printStatusTable(c.App.Writer, st)
}

func printStatusTable(w io.Writer, st []emulation.PlatformStatus) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PLATFORM\tSTATE\tHANDLER\tINTERPRETER\tFLAGS\tPACKAGE\tNOTE")
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	for _, s := range st {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Platform, s.State, dash(s.Handler), dash(s.Interpreter), dash(s.Flags), dash(s.Package), s.Note)
	}
	return tw.Flush()
}

// emulationPlatforms parses the platform arguments of install/uninstall.
func emulationPlatforms(c *cli.Context, verb string) ([]ocispecs.Platform, error) {
	if c.NArg() == 0 {
		return nil, usage.Errorf("\"kiln emulation %s\" needs platforms, for example \"kiln emulation %s linux/arm64\" or \"kiln emulation %s all\"", verb, verb, verb)
	}
	ps, err := emulation.ParsePlatforms(c.Args().Slice())
	if err != nil {
		return nil, usage.Wrap(err)
	}
	return ps, nil
}

// changeEmulation is the action of "kiln emulation VERB": change runs on
// the platforms given and what it did is printed, also when it failed for
// some of them.
func changeEmulation(verb string, change func(context.Context, []ocispecs.Platform) ([]emulation.Action, error)) cli.ActionFunc {
	return func(c *cli.Context) error {
		ps, err := emulationPlatforms(c, verb)
		if err != nil {
			return err
		}
		actions, err := change(c.Context, ps)
		for _, a := range actions {
			fmt.Fprintln(c.App.Writer, a.String())
		}
		return err
	}
}
