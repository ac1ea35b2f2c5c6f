package main

import (
	"fmt"
	"runtime"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/kiln-build/kiln/engine"
	"github.com/kiln-build/kiln/usage"
	"github.com/kiln-build/kiln/version"
)

func usageErrorf(format string, args ...any) error { return usage.Errorf(format, args...) }

func infoCommand() *cli.Command {
	return &cli.Command{
		Name:  "info",
		Usage: "show the containerd kiln uses and the platforms this host can build",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "format", Value: "table", Usage: "output format: table or json"},
		},
		Action: func(c *cli.Context) error {
			asJSON, err := jsonFormat(c)
			if err != nil {
				return err
			}
			info, err := engine.Describe(c.Context, engineConfig(c))
			if err != nil {
				return err
			}
			// The reasons that name kiln's options are the command line's.
			info.StoreReason = storeReason(info.Selection)
			if info.SnapshotterChosen {
				info.SnapshotterReason = snapshotterChosen
			}
			if asJSON {
				return writeJSON(c.App.Writer, info)
			}
			w := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
			fmt.Fprintf(w, "store:\t%s (%s)\n", info.Store, info.StoreReason)
			if info.StoreDir != "" {
				fmt.Fprintf(w, "store directory:\t%s\n", info.StoreDir)
			} else {
				fmt.Fprintf(w, "containerd:\t%s (version %s)\n", info.Address, info.ContainerdVersion)
			}
			fmt.Fprintf(w, "runtime:\t%s\n", info.Runtime)
			fmt.Fprintf(w, "namespace:\t%s\n", info.Namespace)
			fmt.Fprintf(w, "snapshotter:\t%s (%s)\n", info.Snapshotter, info.SnapshotterReason)
			fmt.Fprintf(w, "root:\t%s\n", info.Root)
			fmt.Fprintf(w, "build state:\t%s\n", info.State)
			if info.UserNamespace != "" {
				fmt.Fprintf(w, "rootless:\tyes: kiln's own user namespace (%s)\n", info.UserNamespace)
			} else if r := info.Rootless; r != nil {
				fmt.Fprintf(w, "rootless:\tyes: RootlessKit pid %d, state in %s\n", r.ChildPID, r.StateDir)
				fmt.Fprintf(w, "network:\t%s\n", r.Network)
			} else {
				fmt.Fprintf(w, "rootless:\tno\n")
			}
			fmt.Fprintf(w, "cgroups:\t%s\n", info.Cgroups)
			fmt.Fprintf(w, "host platform:\t%s\n", info.HostPlatform)
			fmt.Fprintf(w, "platforms:\t%s\n", strings.Join(info.Platforms, ", "))
			if len(info.Installable) > 0 {
				fmt.Fprintf(w, "with QEMU:\t%s (registered on first use)\n", strings.Join(info.Installable, ", "))
			}
			return w.Flush()
		},
	}
}

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "show kiln's version",
		Action: func(c *cli.Context) error {
			fmt.Fprintf(c.App.Writer, "kiln %s\nBuildKit %s (embedded)\n%s %s/%s\n", version.Version, engine.BuildKitVersion(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}
