package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/kiln-build/kiln/platform"
	"github.com/kiln-build/kiln/store"
	"github.com/kiln-build/kiln/usage"
)

func manifestCommand() *cli.Command {
	return &cli.Command{
		Name:  "manifest",
		Usage: "join single-platform images into one multi-platform image (a manifest list), as \"docker manifest\" does",
		Description: "A manifest list is an index in containerd's image store: \"kiln push\" uploads it with every\n" +
			"platform, and \"kiln images\" and \"kiln inspect\" show it like any multi-platform image.",
		Subcommands: usageErrors([]*cli.Command{
			manifestCreateCommand(),
			manifestInspectCommand(),
			manifestAnnotateCommand(),
			manifestRmCommand(),
		}),
	}
}

// usageErrors makes flag errors of subcommands usage errors (exit code 2),
// as commands() does for the top-level commands.
func usageErrors(cmds []*cli.Command) []*cli.Command {
	for _, c := range cmds {
		c.OnUsageError = func(_ *cli.Context, err error, _ bool) error { return usage.Wrap(err) }
	}
	return cmds
}

func manifestCreateCommand() *cli.Command {
	return &cli.Command{
		Name:      "create",
		Usage:     "store an index NAME holding every platform of the local images SRC...",
		ArgsUsage: "NAME SRC...",
		Description: "Each SRC is a local image (a name or a digest as \"kiln images -q\" prints it), single-platform\n" +
			"or an index itself; its attestations come along. Each SRC must have all of its content.\n" +
			"An existing NAME is refused unless --amend, which adds the sources to it and replaces its\n" +
			"entries for the same platforms. The host's platform is unpacked, so it runs at once.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "amend", Aliases: []string{"a"}, Usage: "add to the index NAME already holds"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() < 2 {
				return usageErrorf("\"kiln manifest create\" needs a name and at least one image, for example \"kiln manifest create app:1 app:1-amd64 app:1-arm64\"")
			}
			return withStore(c, func(st *store.Store) error {
				res, err := st.CreateManifest(c.Context, c.Args().First(), c.Args().Tail(), store.ManifestCreateOptions{
					Amend:       c.Bool("amend"),
					Snapshotter: engineConfig(c).Snapshotter,
				})
				if err != nil {
					return err
				}
				for _, p := range res.Replaced {
					fmt.Fprintf(c.App.ErrWriter, "replaced %s of %s\n", p, res.Name)
				}
				fmt.Fprintf(c.App.ErrWriter, "%s: %s\n", res.Name, strings.Join(res.Platforms, ", "))
				fmt.Fprintf(c.App.Writer, "%s@%s\n", res.Name, res.Descriptor.Digest)
				return nil
			})
		},
	}
}

func manifestInspectCommand() *cli.Command {
	return &cli.Command{
		Name:      "inspect",
		Usage:     "print the index (or manifest) stored under NAME as JSON",
		ArgsUsage: "NAME",
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageErrorf("\"kiln manifest inspect\" needs exactly one image name")
			}
			return withStore(c, func(st *store.Store) error {
				b, err := st.InspectManifest(c.Context, c.Args().First())
				if err != nil {
					return err
				}
				_, err = c.App.Writer.Write(b)
				return err
			})
		},
	}
}

func manifestAnnotateCommand() *cli.Command {
	return &cli.Command{
		Name:      "annotate",
		Usage:     "change the platform or annotations of one entry of an index, or the index's annotations",
		ArgsUsage: "NAME",
		Description: "--platform picks the entry; --os, --arch, --variant, --os-version and --os-features replace\n" +
			"its platform fields and --annotation KEY=VALUE adds annotations (an empty VALUE removes KEY).\n" +
			"Without --platform, --annotation annotates the index itself.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "platform", Usage: "the entry to change, e.g. linux/arm64"},
			&cli.StringFlag{Name: "os", Usage: "set the entry's operating system"},
			&cli.StringFlag{Name: "arch", Usage: "set the entry's architecture"},
			&cli.StringFlag{Name: "variant", Usage: "set the entry's architecture variant, e.g. v7"},
			&cli.StringFlag{Name: "os-version", Usage: "set the entry's os.version"},
			&cli.StringSliceFlag{Name: "os-features", Usage: "set the entry's os.features (repeatable)"},
			&cli.StringSliceFlag{Name: "annotation", Usage: "add an annotation KEY=VALUE (repeatable)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageErrorf("\"kiln manifest annotate\" needs exactly one image name, for example \"kiln manifest annotate app:1 --platform linux/arm64 --variant v8\"")
			}
			opts := store.AnnotateOptions{
				OS:           c.String("os"),
				Architecture: c.String("arch"),
				Variant:      c.String("variant"),
				OSVersion:    c.String("os-version"),
				Annotations:  map[string]string{},
			}
			if c.IsSet("os-features") {
				opts.OSFeatures = c.StringSlice("os-features")
			}
			if c.IsSet("platform") {
				ps, err := platform.ParseList([]string{c.String("platform")})
				if err != nil {
					return err
				}
				if len(ps) != 1 {
					return usageErrorf("--platform names one entry, not %d", len(ps))
				}
				opts.Platform = &ps[0]
			}
			for _, kv := range c.StringSlice("annotation") {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					return usageErrorf("invalid --annotation %q: use KEY=VALUE", kv)
				}
				opts.Annotations[k] = v
			}
			changesEntry := opts.OS != "" || opts.Architecture != "" || opts.Variant != "" || opts.OSVersion != "" || opts.OSFeatures != nil
			switch {
			case opts.Platform == nil && changesEntry:
				return usageErrorf("--os, --arch, --variant, --os-version and --os-features change one entry: name it with --platform")
			case opts.Platform == nil && len(opts.Annotations) == 0:
				return usageErrorf("nothing to change: give --annotation KEY=VALUE, or --platform P with --os, --arch, --variant, --os-version, --os-features or --annotation")
			}
			return withStore(c, func(st *store.Store) error {
				res, err := st.AnnotateManifest(c.Context, c.Args().First(), opts)
				if err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "%s@%s\n", res.Name, res.Descriptor.Digest)
				return nil
			})
		},
	}
}

func manifestRmCommand() *cli.Command {
	return &cli.Command{
		Name:      "rm",
		Usage:     "remove manifest lists; the images they were made from stay",
		ArgsUsage: "NAME...",
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return usageErrorf("\"kiln manifest rm\" needs the names of the manifest lists to remove")
			}
			return withStore(c, func(st *store.Store) error {
				removed, err := st.RemoveManifests(c.Context, c.Args().Slice())
				for _, n := range removed {
					fmt.Fprintln(c.App.Writer, n)
				}
				return err
			})
		},
	}
}
