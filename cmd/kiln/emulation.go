package main

import (
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
				Action:    runEmulationInstall,
			},
			{
				Name:      "uninstall",
				Usage:     "remove QEMU's handlers for platforms (only handlers named qemu-* whose interpreter is QEMU)",
				ArgsUsage: "PLATFORM... | all",
				Action:    runEmulationUninstall,
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

func runEmulationInstall(c *cli.Context) error {
	ps, err := emulationPlatforms(c, "install")
	if err != nil {
		return err
	}
	actions, err := emulation.Install(c.Context, ps)
	printActions(c.App.Writer, actions)
	return err
}

func runEmulationUninstall(c *cli.Context) error {
	ps, err := emulationPlatforms(c, "uninstall")
	if err != nil {
		return err
	}
	actions, err := emulation.Uninstall(c.Context, ps)
	printActions(c.App.Writer, actions)
	return err
}

func printActions(w io.Writer, actions []emulation.Action) {
	for _, a := range actions {
		fmt.Fprintln(w, a.String())
	}
}
