package main

import (
	"github.com/urfave/cli/v2"

	"github.com/kiln-build/kiln/builder"
	"github.com/kiln-build/kiln/usage"
)

func buildCommand() *cli.Command {
	return &cli.Command{
		Name:      "build",
		Usage:     "build an image from a Dockerfile, for one or more platforms, into containerd",
		ArgsUsage: "PATH",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "file", Aliases: []string{"f"}, Usage: "Dockerfile path (default PATH/Dockerfile; \"-\" reads standard input)"},
			&cli.StringSliceFlag{Name: "tag", Aliases: []string{"t"}, Usage: "name the image, e.g. app or registry.example.com/app:1.0 (repeatable)"},
			&cli.StringSliceFlag{Name: "platform", Usage: "target platforms, e.g. linux/amd64,linux/arm64 (default: this host's)"},
			&cli.StringSliceFlag{Name: "build-arg", Usage: "set a build argument KEY=VALUE; a bare KEY takes its value from the environment"},
			&cli.StringFlag{Name: "target", Usage: "build this stage of a multi-stage Dockerfile"},
			&cli.StringSliceFlag{Name: "label", Usage: "add a label KEY=VALUE to the image"},
			&cli.BoolFlag{Name: "no-cache", Usage: "rebuild every step"},
			&cli.BoolFlag{Name: "pull", Usage: "always ask the registry for base images, even local ones"},
			&cli.StringFlag{Name: "progress", Value: "auto", Usage: "progress output: auto, plain, tty, quiet or rawjson"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print only the image digest"},
			&cli.StringFlag{Name: "iidfile", Usage: "write the image digest to this file"},
			&cli.StringFlag{Name: "metadata-file", Usage: "write the build result's metadata to this file as JSON"},
			&cli.StringSliceFlag{Name: "output", Aliases: []string{"o"}, Usage: "where the result goes: type=image (default: containerd), type=registry, type=oci|docker|tar,dest=FILE, type=local,dest=DIR (repeatable)"},
			&cli.BoolFlag{Name: "push", Usage: "also push the image to its registry (shorthand for type=image,push=true)"},
			&cli.BoolFlag{Name: "no-auto-emulation", Usage: "fail instead of registering QEMU handlers for platforms this host cannot run"},
		},
		Action: runBuild,
	}
}

func runBuild(c *cli.Context) error {
	if c.NArg() != 1 {
		return usage.Errorf("\"kiln build\" needs exactly one build context directory, for example \"kiln build -t app .\"")
	}
	opts := &builder.Options{
		ContextDir:      c.Args().First(),
		Dockerfile:      c.String("file"),
		Tags:            c.StringSlice("tag"),
		Platforms:       c.StringSlice("platform"),
		BuildArgs:       c.StringSlice("build-arg"),
		Target:          c.String("target"),
		Labels:          c.StringSlice("label"),
		NoCache:         c.Bool("no-cache"),
		Pull:            c.Bool("pull"),
		Progress:        c.String("progress"),
		Quiet:           c.Bool("quiet"),
		IIDFile:         c.String("iidfile"),
		MetadataFile:    c.String("metadata-file"),
		Outputs:         c.StringSlice("output"),
		Push:            c.Bool("push"),
		NoAutoEmulation: c.Bool("no-auto-emulation"),
		Stdin:           c.App.Reader,
		Stdout:          c.App.Writer,
		Stderr:          c.App.ErrWriter,
	}
	_, err := builder.Build(c.Context, engineConfig(c), opts)
	return err
}
