package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/kiln-build/kiln/internal/safeio"
	"github.com/kiln-build/kiln/store"
)

func saveCommand() *cli.Command {
	return &cli.Command{
		Name:      "save",
		Usage:     "write images, all their platforms, to an OCI archive that docker load also reads",
		ArgsUsage: "NAME...",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write to this file (\"-\" or none: standard output, unless it is a terminal)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return usageErrorf("\"kiln save\" needs the names of the images to save, for example \"kiln save -o app.tar app:1\"")
			}
			out := c.String("output")
			if (out == "" || out == "-") && isTerminal(c.App.Writer) {
				return usageErrorf("refusing to write an image archive to a terminal: give -o FILE or redirect standard output")
			}
			return withStore(c, func(st *store.Store) error {
				if out == "" || out == "-" {
					return st.Save(c.Context, c.App.Writer, c.Args().Slice())
				}
				// The archive replaces FILE only when whole: a failed or
				// interrupted save leaves FILE as it was.
				f, err := safeio.Create(out, 0o644)
				if err != nil {
					return usageErrorf("cannot write %s: %w", out, err)
				}
				defer f.Close()
				if err := st.Save(c.Context, f, c.Args().Slice()); err != nil {
					return err
				}
				if err := f.Commit(); err != nil {
					return fmt.Errorf("writing %s: %w", out, err)
				}
				return nil
			})
		},
	}
}

func loadCommand() *cli.Command {
	return &cli.Command{
		Name:  "load",
		Usage: "import the images of an archive (kiln save, docker save, OCI layout tar), all platforms, and unpack this host's",
		Description: "kiln prints the name of each image loaded. Images the archive does not name are stored\n" +
			"as docker.io/library/import@DIGEST.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "input", Aliases: []string{"i"}, Usage: "read this file (\"-\" or none: standard input, unless it is a terminal)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageErrorf("\"kiln load\" takes no arguments: give the archive with -i FILE or on standard input")
			}
			var r io.Reader = c.App.Reader
			if r == nil {
				r = os.Stdin
			}
			in, name := c.String("input"), "the archive from standard input"
			if in != "" && in != "-" {
				// A named pipe is a fine archive; waiting for its writer
				// must not outlast SIGINT.
				f, err := safeio.Open(c.Context, in)
				if errors.Is(err, safeio.ErrInterrupted) {
					return err
				}
				if err != nil {
					return usageErrorf("cannot read the archive: %w", err)
				}
				defer f.Close()
				r, name = f, "the archive "+in
			} else if isTerminal(r) {
				return usageErrorf("\"kiln load\" reads an archive from -i FILE or standard input, which is a terminal")
			}
			// A pipe that stays silent must not outlast SIGINT either.
			ir := safeio.Interruptible(c.Context, r, name)
			defer ir.Close()
			r = ir
			return withStore(c, func(st *store.Store) error {
				loaded, err := st.Load(c.Context, r, store.LoadOptions{Snapshotter: engineConfig(c).Snapshotter, Progress: c.App.ErrWriter})
				if err != nil {
					return err
				}
				for _, l := range loaded {
					fmt.Fprintln(c.App.Writer, l.Name)
				}
				return nil
			})
		},
	}
}
