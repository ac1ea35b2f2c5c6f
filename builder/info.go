package builder

import (
	"context"
	"fmt"
	"runtime/debug"

	"github.com/containerd/platforms"

	"github.com/kiln-build/kiln/emulation"
	"github.com/kiln-build/kiln/store"
)

// Info describes where kiln builds and what it can build.
type Info struct {
	// Store is where images are kept: containerd or embedded.
	Store string `json:"store"`
	// StoreReason says why kiln uses that store.
	StoreReason string `json:"storeReason"`
	// StoreDir is the embedded store's directory; empty with containerd.
	StoreDir string `json:"storeDir,omitempty"`
	// Runtime is what runs the build steps: the runc kiln starts them with,
	// or containerd's tasks (see stepsRunc).
	Runtime string `json:"runtime,omitempty"`
	// UserNamespace describes the user namespace kiln made for itself to
	// use the embedded store without root.
	UserNamespace      string   `json:"userNamespace,omitempty"`
	Address            string   `json:"address"`
	ContainerdVersion  string   `json:"containerdVersion"`
	ContainerdRevision string   `json:"containerdRevision"`
	Namespace          string   `json:"namespace"`
	Snapshotter        string   `json:"snapshotter"`
	SnapshotterReason  string   `json:"snapshotterReason"`
	Root               string   `json:"root"`
	HostPlatform       string   `json:"hostPlatform"`
	Platforms          []string `json:"platforms"`
	Installable        []string `json:"installable"`
	// State is BuildKit's state directory for the namespace, under Root:
	// the build cache that kiln du and kiln prune act on (see stateDir).
	State string `json:"state"`
	// Cgroups is the host's cgroup version and how build steps use it.
	Cgroups string `json:"cgroups"`
	// Rootless is set when kiln builds for an unprivileged user with their
	// rootless containerd.
	Rootless *RootlessInfo `json:"rootless,omitempty"`
}

// GetInfo connects to containerd and probes which platforms run here. It does
// not start BuildKit or take the state lock, so it answers during a build.
func GetInfo(ctx context.Context, cfg Config) (*Info, error) {
	sel, err := store.Select(cfg.Store, cfg.Address, cfg.AddressSet)
	if err != nil {
		return nil, err
	}
	if sel.Embedded() {
		return embeddedInfo(ctx, cfg, sel)
	}
	st, err := store.Open(ctx, cfg.Address, cfg.Namespace)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	v := st.Version()
	choice, err := chooseSnapshotter(ctx, st, cfg)
	if err != nil {
		return nil, err
	}
	id, err := st.ID(ctx)
	if err != nil {
		return nil, err
	}
	state, err := stateDir(cfg.Root, id, st.Namespace())
	if err != nil {
		return nil, err
	}
	ps, installable, err := buildablePlatforms(ctx)
	if err != nil {
		return nil, err
	}
	return &Info{
		Store:              sel.Kind,
		StoreReason:        sel.Reason,
		Address:            st.Address(),
		ContainerdVersion:  v.Version,
		ContainerdRevision: v.Revision,
		Namespace:          st.Namespace(),
		Snapshotter:        choice.Name,
		SnapshotterReason:  choice.Reason,
		Root:               cfg.Root,
		HostPlatform:       platforms.Format(platforms.DefaultSpec()),
		Platforms:          ps,
		Installable:        installable,
		State:              state,
		Cgroups:            stepCgroups(cfg),
		Runtime:            stepRuntime(cfg),
		Rootless:           rootlessInfo(cfg),
	}, nil
}

// stepRuntime describes what runs the build steps on containerd.
func stepRuntime(cfg Config) string {
	if p := stepsRunc(cfg.Rootless); p != "" {
		return p
	}
	return "containerd tasks (io.containerd.runc.v2)"
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
