package engine

import (
	"context"
	"fmt"
	"os"
	"runtime/debug"

	"github.com/containerd/platforms"

	"github.com/kiln-build/kiln/emulation"
	"github.com/kiln-build/kiln/store"
)

// Info describes where kiln builds and what it can build.
type Info struct {
	// Store is where images are kept: containerd or embedded.
	Store string `json:"store"`
	// StoreReason says why kiln uses that store. Its words name kiln's
	// options, so the command line writes it, from Selection.
	StoreReason string `json:"storeReason"`
	// Selection is what decided the store.
	Selection store.Selection `json:"-"`
	// Kubernetes names the Kubernetes distribution whose containerd kiln
	// uses (k3s, RKE2, MicroK8s), found at its known socket.
	Kubernetes string `json:"kubernetes,omitempty"`
	// StoreDir is the embedded store's directory; empty with containerd.
	StoreDir string `json:"storeDir,omitempty"`
	// Runtime is what runs the build steps: the runc kiln starts them with,
	// or containerd's tasks (see stepsRunc).
	Runtime string `json:"runtime,omitempty"`
	// UserNamespace describes the user namespace kiln made for itself to
	// use the embedded store without root.
	UserNamespace      string `json:"userNamespace,omitempty"`
	Address            string `json:"address"`
	ContainerdVersion  string `json:"containerdVersion"`
	ContainerdRevision string `json:"containerdRevision"`
	Namespace          string `json:"namespace"`
	Snapshotter        string `json:"snapshotter"`
	SnapshotterReason  string `json:"snapshotterReason"`
	// SnapshotterChosen: the user named the snapshotter. SnapshotterReason
	// would then name kiln's options, so the command line writes it.
	SnapshotterChosen bool `json:"-"`
	// Snapshots is the file system the build steps write to; nil when the
	// snapshotter does not say where its data is.
	Snapshots    *DiskInfo `json:"snapshots,omitempty"`
	Root         string    `json:"root"`
	HostPlatform string    `json:"hostPlatform"`
	Platforms    []string  `json:"platforms"`
	Installable  []string  `json:"installable"`
	// State is BuildKit's state directory for the namespace, under Root:
	// the build cache that kiln du and kiln prune act on (see stateDir).
	State string `json:"state"`
	// Cgroups is the host's cgroup version and how build steps use it.
	Cgroups string `json:"cgroups"`
	// Rootless is set when kiln builds for an unprivileged user with their
	// rootless containerd.
	Rootless *RootlessInfo `json:"rootless,omitempty"`
	// Budget says which build limits are in force and whether the kernel
	// enforces them.
	Budget *BudgetInfo `json:"budget"`
}

// DiskInfo is the space of the file system holding a directory.
type DiskInfo struct {
	Dir string `json:"dir"`
	// Free is what the build steps can still write, in bytes.
	Free uint64 `json:"free"`
	Size uint64 `json:"size"`
}

// RootlessInfo describes the rootless containerd kiln builds with.
type RootlessInfo struct {
	// StateDir is RootlessKit's state directory.
	StateDir string `json:"stateDir"`
	// ChildPID is the RootlessKit child whose namespaces kiln joined.
	ChildPID int `json:"childPid"`
	// Network is the network namespace build steps use.
	Network string `json:"network"`
}

// Describe says which store kiln uses and why, where its state is, what
// runs the build steps, and which platforms run here. It does not start
// BuildKit or take the state lock, so it answers during a build; with
// containerd it connects to it.
func Describe(ctx context.Context, cfg Config) (*Info, error) {
	b, sel, err := cfg.backend()
	if err != nil {
		return nil, err
	}
	info := &Info{
		Store:        sel.Kind,
		Selection:    sel,
		Kubernetes:   sel.Kubernetes,
		Namespace:    cfg.Namespace,
		Root:         cfg.Root,
		HostPlatform: platforms.Format(platforms.DefaultSpec()),
	}
	if sel.Embedded() {
		// The embedded store's snapshotter is chosen by mounting in the
		// root, which must be kiln's before anything is made there.
		if cfg, err = cfg.withClaimedRoot(); err != nil {
			return nil, err
		}
		b, _, _ = cfg.backend()
	}
	if err := b.describe(ctx, info); err != nil {
		return nil, err
	}
	info.Budget = describeBudget(cfg)
	if info.Platforms, info.Installable, err = buildablePlatforms(ctx); err != nil {
		return nil, err
	}
	return info, nil
}

// buildablePlatforms lists the platforms whose programs execute here,
// natively or through a binfmt_misc handler, and apart those that kiln
// makes runnable by registering QEMU on first use.
func buildablePlatforms(ctx context.Context) (runnable, installable []string, err error) {
	statuses, err := emulation.Status(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("probing which platforms run here: %w", err)
	}
	for _, st := range statuses {
		switch st.State {
		case emulation.StateNative, emulation.StateEmulated:
			runnable = append(runnable, st.Platform)
		case emulation.StateInstallable:
			installable = append(installable, st.Platform)
		}
	}
	return runnable, installable, nil
}

// BuildKitVersion returns the version of the BuildKit module linked in.
func BuildKitVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/moby/buildkit" {
				return d.Version
			}
		}
	}
	return "unknown"
}

// cgroupVersion reports the host's cgroup hierarchy: "v2" (unified), "v1"
// or "v1 (hybrid)".
func cgroupVersion() string {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return "v2"
	}
	if _, err := os.Stat("/sys/fs/cgroup/unified"); err == nil {
		return "v1 (hybrid)"
	}
	return "v1"
}
