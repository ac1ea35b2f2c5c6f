// Package snapshot chooses the containerd snapshotter kiln's build steps run
// on, says why, and checks that containerd has it.
//
// Without a choice by the user kiln takes overlayfs, containerd's default
// and what ctr and nerdctl unpack images into, when containerd has it
// loaded and, for a rootless containerd, when the kernel mounts overlayfs
// inside the user namespace (Linux 5.11 or newer, or a distribution kernel
// patched to allow it: kiln tries a mount rather than trusting the version).
// Otherwise it takes fuse-overlayfs when containerd has that snapshotter
// (the containerd-fuse-overlayfs proxy plugin), and native, which copies
// files, as the last resort.
package snapshot

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	ctd "github.com/containerd/containerd/v2/client"

	"github.com/kiln-build/kiln/usage"
)

// Names of the snapshotters kiln chooses between.
const (
	Overlayfs     = "overlayfs"
	FuseOverlayfs = "fuse-overlayfs"
	Native        = "native"
)

// Plugin is one of containerd's snapshotter plugins as its introspection
// API reports it.
type Plugin struct {
	// ID is the snapshotter's name, e.g. "overlayfs".
	ID string
	// Err is why the plugin did not load; empty when it did.
	Err string
	// Root is the directory of the snapshotter's data, as containerd
	// exports it; empty when it does not say.
	Root string
}

// Choice is the snapshotter build steps run on, and why.
type Choice struct {
	Name string `json:"name"`
	// Chosen: the user named it. The words for that name options, so
	// they are the command line's; Reason is then empty.
	Chosen bool `json:"chosen,omitempty"`
	// Reason says why kiln picked it.
	Reason string `json:"reason"`
	// Root is the directory of the snapshotter's data, where the steps
	// write; empty when containerd does not say.
	Root string `json:"-"`
}

// ChoiceError reports that the snapshotter the user named cannot be used.
type ChoiceError struct {
	Name string
	// Embedded: the embedded store's snapshotters; otherwise containerd's.
	Embedded bool
	// Have are the snapshotters to choose from instead.
	Have []string
	// Err says why Name does not work; nil when the store has no
	// snapshotter of that name.
	Err error
	// Where says where the embedded store tried it.
	Where string
}

func (e *ChoiceError) Error() string {
	switch {
	case e.Embedded && e.Err == nil:
		return fmt.Sprintf("the embedded store has no snapshotter %q", e.Name)
	case e.Embedded:
		return fmt.Sprintf("the %s snapshotter does not work %s: %v", e.Name, e.Where, e.Err)
	case e.Err == nil:
		return fmt.Sprintf("containerd has no snapshotter %q (it has %s)", e.Name, e.HaveList())
	}
	return fmt.Sprintf("containerd's %s snapshotter did not load (%v): fix containerd's configuration", e.Name, e.Err)
}

func (e *ChoiceError) Unwrap() error { return e.Err }

// HaveList is Have for messages: comma-separated, or "none".
func (e *ChoiceError) HaveList() string { return list(e.Have) }

func list(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// Request says what Choose chooses for.
type Request struct {
	// Name is the snapshotter the user asked for; empty lets Choose pick.
	Name string
	// Rootless is set for a rootless containerd, in a user namespace.
	Rootless bool
	// Kernel is the kernel release, for the reasons.
	Kernel string
	// ProbeOverlay mounts overlayfs where the steps' snapshots are mounted
	// and reports whether that works; asked only when Rootless is set.
	ProbeOverlay func() error
	// FuseInstalled is set when the fuse-overlayfs program is installed.
	FuseInstalled bool
	// CRI is the snapshotter of containerd's CRI plugin when kiln builds
	// into the CRI's namespace: the kubelet runs images only from what
	// that snapshotter unpacked, so it goes first.
	CRI string
}

// Plugins lists containerd's snapshotter plugins.
func Plugins(ctx context.Context, c *ctd.Client) ([]Plugin, error) {
	resp, err := c.IntrospectionService().Plugins(ctx, "type==io.containerd.snapshotter.v1")
	if err != nil {
		return nil, fmt.Errorf("asking containerd which snapshotters it has: %w", err)
	}
	var out []Plugin
	for _, p := range resp.Plugins {
		pl := Plugin{ID: p.ID, Root: p.Exports["root"]}
		if p.InitErr != nil {
			pl.Err = p.InitErr.Message
			if pl.Err == "" {
				pl.Err = "failed to load"
			}
		}
		out = append(out, pl)
	}
	return out, nil
}

// Choose picks the snapshotter among containerd's plugins, or checks the one
// the user asked for, and gives the chosen plugin's Root. The error says what
// containerd has; a name containerd does not know is a usage error.
func Choose(plugins []Plugin, req Request) (Choice, error) {
	c, err := choose(plugins, req)
	if err != nil {
		return c, err
	}
	for _, p := range plugins {
		if p.ID == c.Name {
			c.Root = p.Root
			break
		}
	}
	return c, nil
}

func choose(plugins []Plugin, req Request) (Choice, error) {
	byID := map[string]Plugin{}
	var loaded []string
	for _, p := range plugins {
		byID[p.ID] = p
		if p.Err == "" {
			loaded = append(loaded, p.ID)
		}
	}
	slices.Sort(loaded)
	if req.Name != "" {
		p, ok := byID[req.Name]
		switch {
		case !ok:
			return Choice{}, usage.Wrap(&ChoiceError{Name: req.Name, Have: loaded})
		case p.Err != "":
			return Choice{}, &ChoiceError{Name: req.Name, Have: loaded, Err: errors.New(p.Err)}
		}
		return Choice{Name: req.Name, Chosen: true}, nil
	}

	if p, ok := byID[req.CRI]; ok && p.Err == "" {
		return Choice{Name: req.CRI, Reason: "the snapshotter of containerd's CRI plugin, which the kubelet runs the images of namespace k8s.io from"}, nil
	}

	var why []string
	p, ok := byID[Overlayfs]
	switch {
	case !ok:
		why = append(why, "containerd has no overlayfs snapshotter")
	case p.Err != "":
		why = append(why, "containerd's overlayfs snapshotter did not load ("+p.Err+")")
	case !req.Rootless:
		return Choice{Name: Overlayfs, Reason: "containerd's default, which ctr and nerdctl use too"}, nil
	default:
		var err error
		if req.ProbeOverlay != nil {
			err = req.ProbeOverlay()
		}
		if err == nil {
			return Choice{Name: Overlayfs, Reason: fmt.Sprintf("containerd's default, which ctr and nerdctl use too; Linux %s mounts overlayfs inside RootlessKit's user namespace (5.11 or newer does)", req.Kernel)}, nil
		}
		why = append(why, fmt.Sprintf("Linux %s cannot mount overlayfs inside RootlessKit's user namespace (5.11 or newer can): %v", req.Kernel, err))
	}

	if p, ok := byID[FuseOverlayfs]; ok && p.Err == "" {
		return Choice{Name: FuseOverlayfs, Reason: strings.Join(why, "; ") + "; containerd has the fuse-overlayfs snapshotter"}, nil
	}
	if req.FuseInstalled {
		why = append(why, "fuse-overlayfs is installed but containerd has no fuse-overlayfs snapshotter (configure containerd-fuse-overlayfs as a proxy plugin to use it)")
	} else {
		why = append(why, "fuse-overlayfs is not installed")
	}
	if p, ok := byID[Native]; ok && p.Err == "" {
		return Choice{Name: Native, Reason: strings.Join(why, "; ") + "; native copies every layer, which is slower and takes more space"}, nil
	}
	return Choice{}, fmt.Errorf("containerd has no snapshotter kiln can use (it has %s): %s; configure overlayfs, fuse-overlayfs or native in containerd", list(loaded), strings.Join(why, "; "))
}
