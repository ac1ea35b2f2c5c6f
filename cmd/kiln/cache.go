package main

import (
	"fmt"
	"text/tabwriter"

	units "github.com/docker/go-units"
	"github.com/urfave/cli/v2"

	"github.com/kiln-build/kiln/engine"
)

func pruneCommand() *cli.Command {
	return &cli.Command{
		Name:  "prune",
		Usage: "free the namespace's build cache",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "all", Aliases: []string{"a"}, Usage: "free all unused cache, including cache shared with images"},
			&cli.StringFlag{Name: "keep-storage", Usage: "keep this much of the most recently used cache, e.g. 5GB"},
			&cli.StringSliceFlag{Name: "filter", Usage: "free only records matching a filter: FIELD, FIELD==VALUE, FIELD!=VALUE or FIELD~=REGEXP (FIELD id, parents, description, inuse, mutable, immutable, type, shared or private), e.g. type==regular (repeatable: records matching any)"},
		},
		Action: func(c *cli.Context) error {
			filters, err := parsePruneFilters(c.StringSlice("filter"))
			if err != nil {
				return err
			}
			opts := engine.PruneOptions{All: c.Bool("all"), Filters: filters}
			if s := c.String("keep-storage"); s != "" {
				n, err := units.RAMInBytes(s)
				if err != nil {
					return usageErrorf("invalid --keep-storage %q: give a size such as 512MB or 5GB", s)
				}
				opts.KeepStorage = n
			}
			recs, err := engine.Prune(c.Context, engineConfig(c), opts, c.App.ErrWriter)
			if err != nil {
				return err
			}
			var total int64
			for _, r := range recs {
				total += r.Size
			}
			fmt.Fprintf(c.App.Writer, "freed %d cache records, %s\n", len(recs), units.HumanSize(float64(total)))
			return nil
		},
	}
}

func duCommand() *cli.Command {
	return &cli.Command{
		Name:  "du",
		Usage: "show the disk usage of the namespace's build cache",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "list every cache record"},
		},
		Action: func(c *cli.Context) error {
			recs, err := engine.DiskUsage(c.Context, engineConfig(c), c.App.ErrWriter)
			if err != nil {
				return err
			}
			var total, shared, reclaimable, reclaimableAll int64
			w := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
			if c.Bool("verbose") {
				fmt.Fprintln(w, "ID\tSIZE\tRECLAIMABLE\tSHARED\tDESCRIPTION")
			}
			for _, r := range recs {
				total += r.Size
				if r.Shared {
					shared += r.Size
				}
				if r.Reclaimable {
					reclaimable += r.Size
				}
				if r.ReclaimableAll {
					reclaimableAll += r.Size
				}
				if c.Bool("verbose") {
					fmt.Fprintf(w, "%.12s\t%s\t%t\t%t\t%s\n", r.ID, units.HumanSize(float64(r.Size)), r.Reclaimable, r.Shared, truncate(r.Description, 60))
				}
			}
			// buildctl du's "Reclaimable" is the --all figure; kiln shows
			// what each prune would free, as buildx separates shared and private.
			fmt.Fprintf(w, "records:\t%d\n", len(recs))
			fmt.Fprintf(w, "shared:\t%s\t(layers images also hold)\n", units.HumanSize(float64(shared)))
			fmt.Fprintf(w, "private:\t%s\n", units.HumanSize(float64(total-shared)))
			fmt.Fprintf(w, "reclaimable:\t%s\t(kiln prune frees this)\n", units.HumanSize(float64(reclaimable)))
			fmt.Fprintf(w, "reclaimable with --all:\t%s\t(kiln prune --all frees this)\n", units.HumanSize(float64(reclaimableAll)))
			fmt.Fprintf(w, "total:\t%s\n", units.HumanSize(float64(total)))
			return w.Flush()
		},
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}
