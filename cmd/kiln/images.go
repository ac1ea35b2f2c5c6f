package main

import (
	"fmt"
	"os"

	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/kiln-build/kiln/engine"
	"github.com/kiln-build/kiln/platform"
	"github.com/kiln-build/kiln/store"
)

// withStore runs fn on the store and namespace the global flags name (a
// containerd, or kiln's embedded store: see engine.OpenStore) and closes
// the store after it.
func withStore(c *cli.Context, fn func(st *store.Store) error) error {
	st, err := engine.OpenStore(c.Context, engineConfig(c), c.App.ErrWriter)
	if err != nil {
		return err
	}
	defer st.Close()
	return fn(st)
}

func imagesCommand() *cli.Command {
	return &cli.Command{
		Name:      "images",
		Usage:     "list the images in the namespace: name, index digest, platforms, size, created",
		ArgsUsage: "[NAME...]",
		Description: "A NAME with a tag lists that image; a bare repository (\"app\") lists all its tags.\n" +
			"PLATFORMS marks platforms whose content is not all present with \"(partial)\"; attestation\n" +
			"manifests are not platforms. SIZE counts the image's blobs present in the content store.\n\n" +
			"--platforms lists one row per platform: CONTENT is complete or partial, UNPACKED says\n" +
			"whether the layers are unpacked in the snapshotter of the global --snapshotter flag.\n\n" +
			"--format json prints one object per line, with the fields of a template:\n" +
			"  images:       name, digest, platforms, partial, complete, size, created\n" +
			"  --platforms:  name, index, platform, digest (the manifest), content, missing,\n" +
			"                unpacked, snapshotter, size, created\n" +
			"Templates use the Go names: {{.Name}} {{.Digest}} {{.Platforms}} {{.Partial}} {{.Complete}}\n" +
			"{{.Size}} {{.Created}}; with --platforms {{.Index}} {{.Platform}} {{.Content}} {{.Unpacked}}...\n" +
			"Template functions: join, json, size.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "platforms", Usage: "one row per platform, with content complete/partial and unpacked yes/no"},
			&cli.StringFlag{Name: "format", Value: "table", Usage: "output format: table, json or a Go template"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print only digests (of the index, or with --platforms of each manifest)"},
			&cli.BoolFlag{Name: "no-trunc", Usage: "print full digests in the table"},
		},
		Action: runImages,
	}
}

func runImages(c *cli.Context) error {
	format := c.String("format")
	if c.Bool("quiet") {
		format = "{{.Digest}}"
	}
	f, err := parseRowFormat(format)
	if err != nil {
		return err
	}
	opts := store.ListOptions{Names: c.Args().Slice()}
	if c.Bool("platforms") {
		opts.Snapshotter = engineConfig(c).Snapshotter
	}
	return withStore(c, func(st *store.Store) error {
		sums, err := st.List(c.Context, opts)
		if err != nil {
			return err
		}
		table := tableOptions{NoTrunc: c.Bool("no-trunc")}
		if c.Bool("platforms") {
			return writePlatformRows(c.App.Writer, platformRows(sums), f, table)
		}
		return writeImageRows(c.App.Writer, imageRows(sums), f, table)
	})
}

func inspectCommand() *cli.Command {
	return &cli.Command{
		Name:      "inspect",
		Usage:     "show an image's index (or manifest) and platforms, or one platform's manifest and config, as JSON",
		ArgsUsage: "NAME",
		Description: "Without --platform kiln prints one JSON object:\n" +
			"  name          the stored name\n" +
			"  descriptor    the image's target (an index or a manifest) as containerd records it\n" +
			"  index         the index blob as stored (when the target is an index), or\n" +
			"  manifest      the manifest blob as stored (when the target is a manifest)\n" +
			"  platforms     per platform: platform, digest, mediaType, content (complete|partial),\n" +
			"                missing (blobs not present: kind, digest, size), unpacked (in --snapshotter),\n" +
			"                size (bytes present), created\n" +
			"  attestations  attestation manifests: digest, for (the manifest described), content, missing\n" +
			"  complete, size, labels, createdAt, updatedAt\n\n" +
			"With --platform P it prints:\n" +
			"  name, index (the image's target), platform (the summary above),\n" +
			"  descriptor (the manifest's entry in the index), manifest and config (the blobs as stored;\n" +
			"  config is null when its blob is missing)\n\n" +
			"--raw prints the stored bytes of the index (or manifest) blob instead, or with --platform\n" +
			"the bytes of that platform's manifest.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "platform", Usage: "show this platform's manifest and config, e.g. linux/arm64"},
			&cli.BoolFlag{Name: "raw", Usage: "print the blob's bytes as stored"},
		},
		Action: runInspect,
	}
}

func runInspect(c *cli.Context) error {
	if c.NArg() != 1 {
		return usageErrorf("\"kiln inspect\" needs exactly one image name, for example \"kiln inspect app:1\"")
	}
	name := c.Args().First()
	var want *ocispecs.Platform
	if v := c.String("platform"); v != "" {
		ps, err := platform.ParseList([]string{v})
		if err != nil {
			return err
		}
		if len(ps) != 1 {
			return usageErrorf("give one --platform for \"kiln inspect\", not %d", len(ps))
		}
		want = &ps[0]
	}
	return withStore(c, func(st *store.Store) error {
		if c.Bool("raw") {
			b, err := st.RawBlob(c.Context, name, want)
			if err != nil {
				return err
			}
			_, err = c.App.Writer.Write(b)
			return err
		}
		snapshotter := engineConfig(c).Snapshotter
		var v any
		var err error
		if want != nil {
			v, err = st.InspectPlatform(c.Context, name, *want, snapshotter)
		} else {
			v, err = st.Inspect(c.Context, name, snapshotter)
		}
		if err != nil {
			return err
		}
		return writeJSON(c.App.Writer, v)
	})
}

func tagCommand() *cli.Command {
	return &cli.Command{
		Name:      "tag",
		Usage:     "give an image more names",
		ArgsUsage: "SRC DST...",
		Action: func(c *cli.Context) error {
			if c.NArg() < 2 {
				return usageErrorf("\"kiln tag\" needs an image and at least one new name, for example \"kiln tag app:1 registry.example.com/app:1\"")
			}
			return withStore(c, func(st *store.Store) error {
				return st.Tag(c.Context, c.Args().First(), c.Args().Tail())
			})
		},
	}
}

func rmCommand() *cli.Command {
	return &cli.Command{
		Name:      "rm",
		Aliases:   []string{"rmi"},
		Usage:     "remove images; content no other image uses is reclaimed",
		ArgsUsage: "NAME|DIGEST...",
		Description: "A DIGEST of an image's index (at least 12 hex digits, with or without \"sha256:\", as\n" +
			"\"kiln images -q\" prints it) removes every name of that image. Images that containers use\n" +
			"are refused unless --force is given.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "remove images even when containers use them (the containers stay)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return usageErrorf("\"kiln rm\" needs the names of the images to remove")
			}
			return withStore(c, func(st *store.Store) error {
				removed, err := st.Remove(c.Context, c.Args().Slice(), store.RemoveOptions{Force: c.Bool("force")})
				for _, n := range removed {
					fmt.Fprintf(c.App.Writer, "removed %s\n", n)
				}
				return err
			})
		},
	}
}

// isTerminal reports whether f is an *os.File open on a terminal.
func isTerminal(f any) bool {
	file, ok := f.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(file.Fd()), unix.TCGETS)
	return err == nil
}
