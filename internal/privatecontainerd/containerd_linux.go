//go:build linux

package privatecontainerd

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Config says where a private containerd keeps its files and how it logs.
type Config struct {
	// Tools holds containerd, containerd-shim-runc-v2 and ctr; it goes first
	// in containerd's PATH, where containerd finds the shim.
	Tools      string
	Dir        string // containerd's root, state and opt go below it
	ConfigPath string // where its config file is written
	Address    string // its gRPC socket; ttrpc listens at Address+".ttrpc"
	LogPath    string
	LogLevel   string        // containerd's --log-level
	Timeout    time.Duration // how long it may take to answer `ctr version`
	// CRI, when set, enables containerd's CRI plugin (Kubernetes' image
	// and runtime services on Address) for pods with the host's network:
	// no CNI configuration is written.
	CRI *CRI
}

// CRI configures the CRI plugin of a private containerd.
type CRI struct {
	// Binary is a containerd built with the CRI plugin (kiln's usual
	// build leaves it out); empty is containerd-cri in Tools.
	Binary string
	// SandboxImage is the pod sandbox ("pause") image; it must be in the
	// namespace k8s.io when a pod starts, as nothing is pulled.
	SandboxImage string
	// Snapshotter is the snapshotter the CRI unpacks and runs images
	// with; empty is containerd's default, overlayfs.
	Snapshotter string
}

// criPlugins are the CRI's plugins, which a containerd without CRI
// disables.
var criPlugins = map[string]bool{
	"io.containerd.grpc.v1.cri":                         true,
	"io.containerd.cri.v1.images":                       true,
	"io.containerd.cri.v1.runtime":                      true,
	"io.containerd.podsandbox.controller.v1.podsandbox": true,
}

// criConfig is the CRI plugin's configuration for cri in dir.
func criConfig(cri *CRI, dir string) string {
	snapshotter := cri.Snapshotter
	if snapshotter == "" {
		snapshotter = "overlayfs"
	}
	return fmt.Sprintf(`
[plugins.'io.containerd.cri.v1.images']
  snapshotter = %q
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = %q

[plugins.'io.containerd.cri.v1.runtime']
  enable_selinux = false
  # The pod sandbox asks for an oom_score_adj of -998; a host that denies
  # CAP_SYS_RESOURCE (a VM's init, a container) refuses that.
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = [%q]
    conf_dir = %q

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
`, snapshotter, cri.SandboxImage, filepath.Join(dir, "cni", "bin"), filepath.Join(dir, "cni", "conf"))
}

// disabledPlugins are the CRI plugins (enabled only with Config.CRI; kiln is also
// built with no_cri) and NRI, which would listen on the host-wide
// /var/run/nri/nri.sock.
var disabledPlugins = []string{
	"io.containerd.grpc.v1.cri",
	"io.containerd.cri.v1.images",
	"io.containerd.cri.v1.runtime",
	"io.containerd.podsandbox.controller.v1.podsandbox",
	"io.containerd.nri.v1.nri",
}

// Containerd is a running private containerd.
type Containerd struct {
	*Daemon
	Address string // its gRPC socket
	tools   string
}

// Start writes c's config, starts containerd and waits until it answers
// `ctr version`. On failure containerd is stopped and its log left at
// c.LogPath.
func Start(c Config) (*Containerd, error) {
	var quoted []string
	for _, p := range disabledPlugins {
		if c.CRI == nil || !criPlugins[p] {
			quoted = append(quoted, strconv.Quote(p))
		}
	}
	config := fmt.Sprintf(`version = 3
root = %q
state = %q
imports = []
disabled_plugins = [%s]

[grpc]
  address = %q

[ttrpc]
  address = %q

[plugins.'io.containerd.internal.v1.opt']
  path = %q
`, filepath.Join(c.Dir, "root"), filepath.Join(c.Dir, "state"), strings.Join(quoted, ", "),
		c.Address, c.Address+".ttrpc", filepath.Join(c.Dir, "opt"))
	if c.CRI != nil {
		config += criConfig(c.CRI, c.Dir)
	}
	if err := os.WriteFile(c.ConfigPath, []byte(config), 0o644); err != nil {
		return nil, err
	}
	bin := filepath.Join(c.Tools, "containerd")
	if c.CRI != nil {
		bin = c.CRI.Binary
		if bin == "" {
			bin = filepath.Join(c.Tools, "containerd-cri")
		}
	}
	cmd := exec.Command(bin, "--config", c.ConfigPath, "--log-level", c.LogLevel)
	cmd.Env = ToolsFirst(c.Tools)
	d, err := StartDaemon("containerd", c.LogPath, cmd)
	if err != nil {
		return nil, err
	}
	ctd := &Containerd{Daemon: d, Address: c.Address, tools: c.Tools}
	if err := d.WaitFor(c.Timeout, "`ctr version`", ctd.version); err != nil {
		ctd.Stop()
		return nil, err
	}
	return ctd, nil
}

// version runs `ctr version`, which answers only once containerd serves.
func (c *Containerd) version() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return exec.CommandContext(ctx, filepath.Join(c.tools, "ctr"), "-a", c.Address, "version").Run()
}

// Stop stops containerd (see Daemon.Stop) and kills the shims it leaves
// running; its files stay.
func (c *Containerd) Stop() {
	c.Daemon.Stop()
	KillShims(c.Address)
}

// ToolsFirst is the environment with tools first in PATH, for a daemon
// that runs the tools built for the harness rather than the host's.
func ToolsFirst(tools string) []string {
	return append(os.Environ(), "PATH="+tools+string(os.PathListSeparator)+os.Getenv("PATH"))
}
