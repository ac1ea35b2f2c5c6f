package main

import (
	"fmt"
	"io"
	"os"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/kiln-build/kiln/platform"
	"github.com/kiln-build/kiln/registry"
	"github.com/kiln-build/kiln/store"
)

func registryFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "insecure-registry", Usage: "allow plain HTTP and unverified TLS certificates (loopback registries always allow HTTP)"},
		&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print no progress"},
	}
}

// registryOptions are the global registry options (--hosts-dir) with the
// command's --insecure-registry.
func registryOptions(c *cli.Context) registry.Config {
	cfg := engineConfig(c).Registry
	cfg.Insecure = c.Bool("insecure-registry")
	return cfg
}

func progressWriter(c *cli.Context) io.Writer {
	if c.Bool("quiet") {
		return nil
	}
	return c.App.ErrWriter
}

// progressTerminal reports whether progress goes to a terminal, where
// transfers draw a live bar per blob.
func progressTerminal(c *cli.Context) bool {
	f, ok := c.App.ErrWriter.(*os.File)
	return ok && !c.Bool("quiet") && term.IsTerminal(int(f.Fd())) && os.Getenv("TERM") != "dumb"
}

func pullCommand() *cli.Command {
	return &cli.Command{
		Name:      "pull",
		Usage:     "fetch an image from its registry (or a containerd) into the namespace and unpack this host's platform",
		ArgsUsage: "NAME [containerd://[ADDRESS][/NAMESPACE]]",
		Description: "Without --platform only this host's platform is fetched. The index is always stored whole,\n" +
			"so pulling some platforms of a multi-platform image leaves the others partial\n" +
			"(see \"kiln images --platforms\"). Progress goes to standard error, the image name to\n" +
			"standard output. Credentials come from the docker config file and its credential helpers\n" +
			"(\"kiln login\"); mirrors, CAs and plain-HTTP registries from hosts.toml (see --hosts-dir).\n" +
			"A transfer the network or the registry broke is retried, resuming where it can.\n\n" +
			"With containerd://[ADDRESS][/NAMESPACE] the image is copied, every platform, from that\n" +
			"containerd (default " + store.DefaultAddress + ", and the --namespace namespace) instead,\n" +
			"for example into kiln's embedded store.",
		Flags: append([]cli.Flag{
			&cli.StringSliceFlag{Name: "platform", Usage: "fetch these platforms, e.g. linux/arm64 (repeatable or comma-separated)"},
			&cli.BoolFlag{Name: "all-platforms", Usage: "fetch every platform"},
		}, registryFlags()...),
		Action: func(c *cli.Context) error {
			if c.NArg() == 2 {
				return copyFromContainerd(c)
			}
			if c.NArg() != 1 {
				return usageErrorf("\"kiln pull\" needs exactly one image name, for example \"kiln pull registry.example.com/app:1\", and optionally containerd://[ADDRESS][/NAMESPACE] to copy it from")
			}
			ps, err := platform.ParseList(c.StringSlice("platform"))
			if err != nil {
				return err
			}
			if len(ps) > 0 && c.Bool("all-platforms") {
				return usageErrorf("give either --platform or --all-platforms, not both")
			}
			return withStore(c, func(st *store.Store) error {
				res, err := st.Pull(c.Context, c.Args().First(), store.PullOptions{
					Platforms:    ps,
					AllPlatforms: c.Bool("all-platforms"),
					Snapshotter:  engineConfig(c).Snapshotter,
					Registry:     registryOptions(c),
					Progress:     progressWriter(c),
					Terminal:     progressTerminal(c),
				})
				if err != nil {
					return err
				}
				fmt.Fprintln(c.App.Writer, res.Name)
				return nil
			})
		},
	}
}

func pushCommand() *cli.Command {
	return &cli.Command{
		Name:      "push",
		Usage:     "upload an image, every platform and blob, to the registry its name points at (or into a containerd)",
		ArgsUsage: "NAME [containerd://[ADDRESS][/NAMESPACE]]",
		Description: "kiln pushes the image's index with all of its content and refuses a partial image, naming\n" +
			"what is missing. --platform pushes a new index holding only those platforms. Progress goes\n" +
			"to standard error; NAME@DIGEST of what was pushed to standard output. Credentials come from\n" +
			"the docker config file and its credential helpers (\"kiln login\"); CAs and plain-HTTP\n" +
			"registries from hosts.toml (see --hosts-dir). An upload the network or the registry broke\n" +
			"starts again, up to five times.\n\n" +
			"With containerd://[ADDRESS][/NAMESPACE] the image is copied, every platform, into that\n" +
			"containerd (default " + store.DefaultAddress + ", and the --namespace namespace) instead,\n" +
			"for example from kiln's embedded store, and this host's platform is unpacked there in the\n" +
			"--snapshotter snapshotter, so that ctr and nerdctl run it at once.",
		Flags: append([]cli.Flag{
			&cli.StringSliceFlag{Name: "platform", Usage: "push only these platforms, e.g. linux/amd64 (repeatable or comma-separated)"},
		}, registryFlags()...),
		Action: func(c *cli.Context) error {
			if c.NArg() == 2 {
				return copyToContainerd(c)
			}
			if c.NArg() != 1 {
				return usageErrorf("\"kiln push\" needs exactly one image name, for example \"kiln push registry.example.com/app:1\", and optionally containerd://[ADDRESS][/NAMESPACE] to copy it into")
			}
			ps, err := platform.ParseList(c.StringSlice("platform"))
			if err != nil {
				return err
			}
			return withStore(c, func(st *store.Store) error {
				res, err := st.Push(c.Context, c.Args().First(), store.PushOptions{
					Platforms: ps,
					Registry:  registryOptions(c),
					Progress:  progressWriter(c),
					Terminal:  progressTerminal(c),
				})
				if err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "%s@%s\n", res.Name, res.Descriptor.Digest)
				return nil
			})
		},
	}
}
