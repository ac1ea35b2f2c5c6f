package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/containerd/platforms"
	"github.com/urfave/cli/v2"

	"github.com/kiln-build/kiln/builder"
	"github.com/kiln-build/kiln/compose"
	"github.com/kiln-build/kiln/emulation"
	"github.com/kiln-build/kiln/nodes"
	"github.com/kiln-build/kiln/platform"
	"github.com/kiln-build/kiln/request"
	"github.com/kiln-build/kiln/usage"
)

func composeCommand() *cli.Command {
	return &cli.Command{
		Name:      "compose",
		Usage:     "build the images of a compose project's services, as nerdctl compose and docker compose name them",
		ArgsUsage: "build [SERVICE...]",
		Description: "kiln compose reads compose files as docker compose does (interpolation, .env, profiles,\n" +
			"extends, include) and builds every service with a build section in one kiln process,\n" +
			"independent services at the same time, into containerd, where \"nerdctl compose up\" finds them.",
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "file", Aliases: []string{"f"}, Usage: "compose file (repeatable; default: compose.yaml or docker-compose.yml here or in a parent, or $COMPOSE_FILE)"},
			&cli.StringFlag{Name: "project-name", Aliases: []string{"p"}, Usage: "project name (default: $COMPOSE_PROJECT_NAME, the files' name:, or the project directory's name)"},
			&cli.StringSliceFlag{Name: "profile", Usage: "enable the services of this profile (repeatable; default: $COMPOSE_PROFILES)"},
			&cli.StringSliceFlag{Name: "env-file", Usage: "read variables for interpolation from this file instead of the project directory's .env (repeatable)"},
			&cli.StringFlag{Name: "project-directory", Usage: "project directory (default: the first compose file's directory)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usage.Errorf("unknown compose command %q: kiln compose builds images (kiln compose build); run the project with \"nerdctl compose up\"", c.Args().First())
			}
			return cli.ShowSubcommandHelp(c)
		},
		Subcommands:     []*cli.Command{composeBuildCommand()},
		HideHelpCommand: true,
	}
}

func composeBuildCommand() *cli.Command {
	return &cli.Command{
		Name:      "build",
		Usage:     "build the services' images (every service with a build section, or those named)",
		ArgsUsage: "[SERVICE...]",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "no-cache", Usage: "rebuild every step of every service"},
			&cli.BoolFlag{Name: "pull", Usage: "always ask the registry for base images, even local ones"},
			&cli.BoolFlag{Name: "push", Usage: "also push the images of services that have an image: name"},
			&cli.StringSliceFlag{Name: "build-arg", Usage: "set a build argument KEY=VALUE for every service; a bare KEY takes its value from the environment (repeatable)"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print nothing but errors"},
			&cli.StringFlag{Name: "progress", Value: "auto", Usage: "progress output: auto, plain, tty, quiet or rawjson"},
			&cli.BoolFlag{Name: "with-dependencies", Usage: "also build the services the named ones depend on"},
			&cli.StringSliceFlag{Name: "platform", Usage: "build every service for these platforms instead of its own, e.g. linux/amd64,linux/arm64"},
			&cli.BoolFlag{Name: "no-auto-emulation", Usage: "fail instead of registering QEMU handlers for platforms this host cannot run"},
		},
		Action: runComposeBuild,
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return usage.Wrap(err)
		},
	}
}

func runComposeBuild(c *cli.Context) error {
	// The compose command's own options (-f, -p ...) are its parent's.
	parent := c.Lineage()[1]
	ctx := c.Context
	project, err := compose.Load(ctx, compose.LoadOptions{
		Files:       parent.StringSlice("file"),
		ProjectName: parent.String("project-name"),
		Profiles:    parent.StringSlice("profile"),
		EnvFiles:    parent.StringSlice("env-file"),
		WorkingDir:  parent.String("project-directory"),
		Environment: os.Environ(),
	})
	if err != nil {
		return err
	}
	plan, err := project.Plan(compose.BuildOptions{
		Services:         c.Args().Slice(),
		WithDependencies: c.Bool("with-dependencies"),
		NoCache:          c.Bool("no-cache"),
		Pull:             c.Bool("pull"),
		Push:             c.Bool("push"),
		BuildArgs:        c.StringSlice("build-arg"),
		Platforms:        c.StringSlice("platform"),
		Progress:         c.String("progress"),
		Quiet:            c.Bool("quiet"),
		NoAutoEmulation:  c.Bool("no-auto-emulation"),
	})
	if err != nil {
		return err
	}
	stderr := c.App.ErrWriter
	if len(plan.Builds) == 0 {
		if !c.Bool("quiet") {
			fmt.Fprintf(stderr, "nothing to build: no service of project %s has a build section\n", plan.Project)
		}
		return nil
	}
	limits, err := historyLimits(c)
	if err != nil {
		return err
	}
	// Every service's options are checked before anything is built.
	reqs := map[string]*request.Request{}
	var all []*request.Request
	defer func() {
		for _, r := range all {
			r.Close()
		}
	}()
	for _, b := range plan.Builds {
		b.Options.Stdout, b.Options.Stderr = c.App.Writer, stderr
		req, err := request.Parse(ctx, &b.Options)
		if err != nil {
			return fmt.Errorf("service %s: %w", b.Service, err)
		}
		reqs[b.Service] = req
		all = append(all, req)
		for _, w := range req.Warnings {
			fmt.Fprintf(stderr, "service %s: %s\n", b.Service, w)
		}
	}
	warnNodesUnused(ctx, stderr, all)

	sess, err := builder.NewSession(ctx, engineConfig(c), all, builder.WithHistory(limits, os.Args[1:]))
	if err != nil {
		return err
	}
	var mu sync.Mutex
	results := map[string]*builder.Result{}
	errs := plan.Walk(ctx, func(ctx context.Context, b *compose.Build) error {
		req := reqs[b.Service]
		for name, dep := range b.ServiceContexts {
			mu.Lock()
			res := results[dep]
			mu.Unlock()
			if err := sess.UseImage(ctx, req, name, res); err != nil {
				return err
			}
		}
		res, err := sess.Build(ctx, b.Service, req)
		if err != nil {
			return request.WithHint(err, composeOptionHint)
		}
		mu.Lock()
		results[b.Service] = res
		mu.Unlock()
		return nil
	})
	closeErr := sess.Close(ctx)
	return reportCompose(c, plan, reqs, results, errs, closeErr)
}

// warnNodesUnused says that the nodes of the nodes files, which kiln build
// sends foreign platforms to, do not take part when a compose build has
// such platforms: every service builds here.
func warnNodesUnused(ctx context.Context, stderr io.Writer, reqs []*request.Request) {
	configured, err := nodes.LoadDefault(ctx)
	if err != nil || len(configured) == 0 {
		return
	}
	host := platforms.Only(emulation.HostPlatform())
	for _, r := range reqs {
		for _, p := range r.Platforms {
			if !host.Match(p) {
				var names []string
				for _, n := range configured {
					names = append(names, n.Name)
				}
				fmt.Fprintf(stderr, "warning: kiln compose build builds every platform on this host, %s under QEMU: the nodes of the nodes files (%s) are for kiln build only\n", platforms.Format(p), strings.Join(names, ", "))
				return
			}
		}
	}
}

// reportCompose says what was built and what failed, in the plan's order:
// one line per service built (unless quiet), and each failure as an error
// of its own.
func reportCompose(c *cli.Context, plan *compose.Plan, reqs map[string]*request.Request, results map[string]*builder.Result, errs map[string]error, closeErr error) error {
	stderr := c.App.ErrWriter
	if err := c.Context.Err(); err != nil {
		return fmt.Errorf("compose build interrupted: the steps that finished are cached for the next build: %w", err)
	}
	var failed []string
	for _, b := range plan.Builds {
		if err := errs[b.Service]; err != nil {
			failed = append(failed, b.Service)
			var nb *compose.NotBuiltError
			if errors.As(err, &nb) {
				fmt.Fprintf(stderr, "service %s: %v\n", b.Service, err)
				continue
			}
			fmt.Fprintf(stderr, "error: service %s: %v\n", b.Service, withHints(err))
			continue
		}
		if c.Bool("quiet") {
			continue
		}
		res := results[b.Service]
		plats := "this host's platform"
		if len(res.Platforms) > 0 {
			plats = platform.Describe(res.Platforms)
		}
		fmt.Fprintf(stderr, "built service %s: %s for %s\n", b.Service, reqs[b.Service].Names[0], plats)
	}
	if len(failed) > 0 {
		if closeErr != nil {
			fmt.Fprintf(stderr, "error: %v\n", closeErr)
		}
		if len(failed) == 1 && len(plan.Builds) == 1 {
			return exitStatus(1)
		}
		fmt.Fprintf(stderr, "error: %d of %d services not built: %s\n", len(failed), len(plan.Builds), strings.Join(failed, ", "))
		return exitStatus(1)
	}
	return closeErr
}
