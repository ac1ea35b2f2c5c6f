package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/kiln-build/kiln/cgroup"
	"github.com/kiln-build/kiln/engine"
	"github.com/kiln-build/kiln/request"
	"github.com/kiln-build/kiln/store"
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
			cfg := engineConfig(c)
			// A build without options has the environment's budget.
			budget, err := request.ParseBudget(os.Getenv("KILN_MEMORY"), os.Getenv("KILN_CPUS"), os.Getenv("KILN_MAX_PARALLELISM"))
			if err != nil {
				return err
			}
			cfg.Limits = engine.Limits{Memory: budget.Memory, CPUs: budget.CPUs, MaxParallelism: budget.MaxParallelism}
			info, err := engine.Describe(c.Context, cfg)
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
			if info.Kubernetes != "" {
				if info.Namespace == store.KubernetesNamespace {
					fmt.Fprintf(w, "kubernetes:\t%s: images built here are the kubelet's (namespace %s)\n", info.Kubernetes, store.KubernetesNamespace)
				} else {
					fmt.Fprintf(w, "kubernetes:\t%s: build with --k8s (namespace %s) for the kubelet to run the images\n", info.Kubernetes, store.KubernetesNamespace)
				}
			}
			fmt.Fprintf(w, "runtime:\t%s\n", info.Runtime)
			fmt.Fprintf(w, "namespace:\t%s\n", info.Namespace)
			fmt.Fprintf(w, "snapshotter:\t%s (%s)\n", info.Snapshotter, info.SnapshotterReason)
			if d := info.Snapshots; d != nil {
				fmt.Fprintf(w, "snapshots:\t%s (%s free of %s)\n", d.Dir, humanSize(int64(d.Free)), humanSize(int64(d.Size)))
			}
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
			writeBudget(w, info.Budget)
			fmt.Fprintf(w, "host platform:\t%s\n", info.HostPlatform)
			fmt.Fprintf(w, "platforms:\t%s\n", strings.Join(info.Platforms, ", "))
			if len(info.Installable) > 0 {
				fmt.Fprintf(w, "with QEMU:\t%s (registered on first use)\n", strings.Join(info.Installable, ", "))
			}
			return w.Flush()
		},
	}
}

// writeBudget shows the build limits in force (from the environment) and
// whether the kernel enforces --memory and --cpus here.
func writeBudget(w io.Writer, b *engine.BudgetInfo) {
	if b == nil {
		return
	}
	limits := b.Limits
	if limits == "none" {
		limits = "none (kiln build --memory, --cpus, --max-parallelism or KILN_MEMORY, KILN_CPUS, KILN_MAX_PARALLELISM set them)"
	} else {
		limits += " (from the environment)"
	}
	fmt.Fprintf(w, "limits:\t%s\n", limits)
	if !b.Enforced {
		fmt.Fprintf(w, "enforced:\tno: %s\n", b.Why)
	} else if b.Cgroup != "" {
		fmt.Fprintf(w, "enforced:\tyes: the steps run in the cgroup %s\n", b.Cgroup)
	}
	for _, c := range []cgroup.Controller{b.Memory, b.CPU} {
		flag := map[string]string{"memory": "--memory", "cpu": "--cpus"}[c.Name]
		if c.Available {
			fmt.Fprintf(w, "%s controller:\tyes (cgroup %s, %s): %s is enforced as root, or in a cgroup delegated to you\n", c.Name, c.Version, c.Dir, flag)
		} else {
			fmt.Fprintf(w, "%s controller:\tno: %s; %s cannot be enforced\n", c.Name, c.Why, flag)
		}
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
