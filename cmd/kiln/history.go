package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kiln-build/kiln/engine"
	"github.com/kiln-build/kiln/history"
	"github.com/kiln-build/kiln/internal/errmsg"
	"github.com/kiln-build/kiln/store"
	"github.com/kiln-build/kiln/usage"
)

// historyLimits reads the global flags that bound the build history.
func historyLimits(c *cli.Context) (history.Limits, error) {
	l := history.Limits{MaxEntries: c.Int("history-max-entries"), MaxAge: c.Duration("history-max-age")}
	if err := l.Validate(); err != nil {
		return l, usage.Wrap(err)
	}
	return l, nil
}

const refUsage = "REF is a build's reference or its start, ^N the Nth build before the latest; the latest when left out"

func historyCommand() *cli.Command {
	return &cli.Command{
		Name:  "history",
		Usage: "list, inspect, show the logs of and remove the records of the namespace's builds",
		Subcommands: []*cli.Command{
			{
				Name:  "ls",
				Usage: "list the recorded builds, the latest first",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "format", Usage: "table (default), json (one record per line) or a Go template such as '{{.Ref}} {{.Status}}'"},
					&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print only the references"},
				},
				Action: historyList,
			},
			{
				Name:        "inspect",
				Usage:       "show a recorded build: command line, platforms, status, result, steps, error, warnings",
				ArgsUsage:   "[REF]",
				Description: refUsage,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "format", Usage: "text (default) or json"},
				},
				Action: historyInspect,
			},
			{
				Name:        "logs",
				Usage:       "print a recorded build's progress as --progress plain showed it",
				ArgsUsage:   "[REF]",
				Description: refUsage,
				Action:      historyLogs,
			},
			{
				Name:        "rm",
				Usage:       "remove recorded builds",
				ArgsUsage:   "REF...",
				Description: refUsage,
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "all", Usage: "remove every record that is not of a running build"},
				},
				Action: historyRemove,
			},
		},
	}
}

// historyDir is the build history of the store and namespace the global
// options select.
func historyDir(c *cli.Context) (string, error) {
	return engine.HistoryDir(c.Context, engineConfig(c))
}

// historyRef checks that a command takes at most one REF and returns it.
func historyRef(c *cli.Context) (string, error) {
	if c.NArg() > 1 {
		return "", usageErrorf("\"kiln history %s\" takes one build reference, got %d", c.Command.Name, c.NArg())
	}
	return c.Args().First(), nil
}

// findRecord finds the record ref names; a reference that cannot be one is
// a usage error.
func findRecord(dir, ref string) (history.Record, error) {
	rec, err := history.Find(dir, ref)
	var inv *history.InvalidRefError
	if errors.As(err, &inv) {
		return rec, usage.Wrap(err)
	}
	return rec, err
}

// historyRow is one row of "kiln history ls". Templates see these names.
type historyRow struct {
	history.Record
	// Name is what the build made: its first image name, or its context
	// directory.
	Name string `json:"-"`
}

func historyList(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageErrorf("\"kiln history ls\" takes no arguments")
	}
	f, err := parseRowFormat(c.String("format"))
	if err != nil {
		return err
	}
	dir, err := historyDir(c)
	if err != nil {
		return err
	}
	recs, err := history.List(dir)
	if err != nil {
		return err
	}
	if c.Bool("quiet") {
		for _, r := range recs {
			fmt.Fprintln(c.App.Writer, r.Ref)
		}
		return nil
	}
	now := time.Now()
	items := make([]any, len(recs))
	for i, r := range recs {
		if f.kind == "json" {
			items[i] = r
		} else {
			items[i] = historyRow{Record: r, Name: buildName(r)}
		}
	}
	header := []string{"BUILD ID", "NAME", "STATUS", "CREATED", "DURATION", "STEPS"}
	return writeRows(c.App.Writer, f, items, header, func(i int) []string {
		r := recs[i]
		return []string{r.Ref, buildName(r), string(r.Status), ago(&r.Started, now), formatDuration(r.Duration(now)), stepSummary(r)}
	})
}

// buildName is how a list names a build: its first image name, familiar
// (app:latest), or its context directory's name.
func buildName(r history.Record) string {
	if len(r.Names) > 0 {
		n := store.FamiliarName(r.Names[0])
		if len(r.Names) > 1 {
			n += fmt.Sprintf(" (+%d)", len(r.Names)-1)
		}
		return n
	}
	return filepath.Base(r.Context)
}

// stepSummary says how many steps ran and how many were cached.
func stepSummary(r history.Record) string {
	if r.Steps == 0 {
		return "-"
	}
	return fmt.Sprintf("%d/%d (%d cached)", r.Completed, r.Steps, r.Cached)
}

// formatDuration prints a duration as buildx's history does: 1.2s, 3m4s.
func formatDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%dm%ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%dh%dm", int(d.Hours()), int(d.Minutes())%60)
}

func historyInspect(c *cli.Context) error {
	ref, err := historyRef(c)
	if err != nil {
		return err
	}
	format := c.String("format")
	if format != "" && format != "text" && format != "json" {
		return usageErrorf("invalid --format %q: use text or json", format)
	}
	dir, err := historyDir(c)
	if err != nil {
		return err
	}
	rec, err := findRecord(dir, ref)
	if err != nil {
		return err
	}
	if format == "json" {
		dt, err := json.MarshalIndent(rec, "", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintln(c.App.Writer, string(dt))
		return nil
	}
	return writeRecord(c.App.Writer, rec, time.Now())
}

// writeRecord writes a record's details as "kiln history inspect" shows them.
func writeRecord(w io.Writer, r history.Record, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', 0)
	line := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, v)
		}
	}
	line("Ref", r.Ref)
	line("Command", "kiln "+strings.Join(r.Command, " "))
	line("Context", r.Context)
	line("Dockerfile", r.Dockerfile)
	line("Target", r.Target)
	line("Platforms", strings.Join(r.Platforms, ", "))
	line("Names", strings.Join(r.Names, ", "))
	line("Status", string(r.Status))
	line("Started", r.Started.Local().Format("2006-01-02 15:04:05"))
	dur := formatDuration(r.Duration(now))
	if r.Status == history.StatusRunning {
		dur += " (running)"
	}
	line("Duration", dur)
	if r.Steps > 0 {
		line("Build Steps", fmt.Sprintf("%d/%d (%.0f%% cached)", r.Completed, r.Steps, float64(r.Cached)/float64(r.Steps)*100))
	}
	line("Digest", r.Digest)
	line("Error", strings.Join(strings.Fields(r.Error), " "))
	line("Process", fmt.Sprintf("kiln, pid %d", r.PID))
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.Warnings) > 0 {
		fmt.Fprintf(w, "\n%d warning(s):\n", len(r.Warnings))
		for _, warn := range r.Warnings {
			fmt.Fprintf(w, " - %s\n", warn)
		}
	}
	if r.Error != "" && strings.Contains(r.Error, "\n") {
		fmt.Fprintf(w, "\nError (as printed):\n%s\n", r.Error)
	}
	return nil
}

func historyLogs(c *cli.Context) error {
	ref, err := historyRef(c)
	if err != nil {
		return err
	}
	dir, err := historyDir(c)
	if err != nil {
		return err
	}
	rec, err := findRecord(dir, ref)
	if err != nil {
		return err
	}
	r, err := history.OpenLog(dir, rec)
	if err != nil {
		return err
	}
	defer r.Close()
	if _, err := io.Copy(c.App.Writer, r); err != nil {
		return fmt.Errorf("reading the progress log of build %s: %w", rec.Ref, err)
	}
	return nil
}

func historyRemove(c *cli.Context) error {
	refs := c.Args().Slice()
	if c.Bool("all") == (len(refs) > 0) {
		return usageErrorf("\"kiln history rm\" needs build references, or --all")
	}
	dir, err := historyDir(c)
	if err != nil {
		return err
	}
	if c.Bool("all") {
		recs, err := history.List(dir)
		if err != nil {
			return err
		}
		for _, r := range recs {
			if r.Status != history.StatusRunning {
				refs = append(refs, r.Ref)
			}
		}
	}
	var errs []error
	for _, ref := range refs {
		if ref == "" {
			errs = append(errs, usageErrorf("an empty build reference names no build"))
			continue
		}
		rec, err := history.Remove(dir, ref)
		var inv *history.InvalidRefError
		if errors.As(err, &inv) {
			err = usage.Wrap(err)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Fprintln(c.App.Writer, rec.Ref)
	}
	// One line, however many records failed.
	return errmsg.Join(errs...)
}
