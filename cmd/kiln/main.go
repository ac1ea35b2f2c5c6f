// Command kiln builds multi-platform container images into containerd with no
// build daemon.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/kiln-build/kiln/cgroup"
	"github.com/kiln-build/kiln/rootless"
	"github.com/kiln-build/kiln/usage"
	"github.com/kiln-build/kiln/version"
)

func main() {
	// kiln started as the runc of an unprivileged build's steps joins the
	// build's cgroup and becomes runc (see cgroup.Group.Wrap).
	if wrapper, err := cgroup.Exec(os.Args); wrapper {
		fmt.Fprintln(os.Stderr, "kiln: "+err.Error())
		os.Exit(1)
	}
	// No library logs a line before kiln knows whether --debug asks for it.
	libraryLogs(false)
	// In the namespaces kiln made for itself (see ownNamespaces), finish
	// entering them before anything else.
	if err := rootless.FinishOwnNamespaces(); err != nil {
		fmt.Fprintln(os.Stderr, "error: "+err.Error())
		os.Exit(1)
	}
	// An unprivileged user's kiln works inside the namespaces of their
	// rootless containerd: Enter re-executes kiln there through nsenter
	// (and does not return), before anything depends on where it runs.
	if joinsNamespaces(newApp(), os.Args) && !embeddedChosen(os.Args) {
		if err := rootless.Enter(); err != nil {
			fmt.Fprintln(os.Stderr, "error: "+err.Error())
			os.Exit(1)
		}
	}
	os.Exit(run(os.Args))
}

// joinsNamespaces reports whether args run a command that an unprivileged
// user's kiln runs inside their rootless containerd's namespaces (see
// commandNamespaces); help and unknown commands do not.
func joinsNamespaces(app *cli.App, args []string) bool {
	for _, a := range args[1:] {
		if a == "--" {
			break
		}
		switch a {
		case "-h", "--help", "-help", "-v", "--version":
			return false
		}
	}
	i := 1
	for ; i < len(args) && strings.HasPrefix(args[i], "-") && args[i] != "--"; i++ {
		if takesValue(app.Flags, args[i]) {
			i++
		}
	}
	if i >= len(args) {
		return false
	}
	cmd := findCommand(app.Commands, args[i])
	return cmd != nil && commandNamespaces[cmd.Name].joinsContainerd
}

// run executes kiln and returns its exit status: 0, 1 for a failure, 2 for a
// usage error, 128+N when signal N interrupted it.
func run(args []string) int {
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	var got os.Signal
	go func() {
		got = <-sig
		stop()
	}()

	app := newApp()
	err := app.RunContext(ctx, reorder(app, args))
	if err == nil {
		return 0
	}
	var status exitStatus
	if errors.As(err, &status) {
		return int(status)
	}
	fmt.Fprintln(os.Stderr, "error: "+withHints(err).Error())
	switch {
	case got != nil:
		return 128 + int(got.(syscall.Signal))
	case usage.Is(err):
		return usage.ExitCode
	}
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		return ec.ExitCode()
	}
	return 1
}

func newApp() *cli.App {
	return &cli.App{
		Name:    "kiln",
		Usage:   "build multi-platform container images into containerd, with no build daemon",
		Version: version.Version,
		Description: "kiln runs BuildKit inside its own process, executes build steps through containerd\n" +
			"(foreign architectures under QEMU) and stores the result as one multi-platform image\n" +
			"in containerd's image store, where nerdctl and ctr can run it at once.",
		Flags:  globalFlags(),
		Before: setup,
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usage.Errorf("unknown command %q: run \"kiln --help\" for the list", c.Args().First())
			}
			return cli.ShowAppHelp(c)
		},
		Commands:        commands(),
		HideHelpCommand: true,
		// Values such as --build-arg K=a,b keep their commas; --platform splits its own.
		DisableSliceFlagSeparator: true,
		EnableBashCompletion:      false,
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return usage.Wrap(err)
		},
		ExitErrHandler: func(*cli.Context, error) {},
		Writer:         os.Stdout,
		ErrWriter:      os.Stderr,
	}
}

func commands() []*cli.Command {
	cmds := []*cli.Command{
		buildCommand(),
		composeCommand(),
		pruneCommand(),
		duCommand(),
		emulationCommand(),
		imagesCommand(),
		inspectCommand(),
		tagCommand(),
		rmCommand(),
		pullCommand(),
		pushCommand(),
		loginCommand(),
		logoutCommand(),
		manifestCommand(),
		nodeCommand(),
		saveCommand(),
		loadCommand(),
		historyCommand(),
		infoCommand(),
		versionCommand(),
	}
	for _, c := range cmds {
		c.OnUsageError = func(_ *cli.Context, err error, _ bool) error { return usage.Wrap(err) }
	}
	return cmds
}

// setup configures logging: the libraries' logs are noise unless --debug
// asks for them (see libraryLogs). It checks the global options.
func setup(c *cli.Context) error {
	libraryLogs(c.Bool("debug"))
	if err := checkGlobals(c); err != nil {
		return err
	}
	return ownNamespaces(c)
}
