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
}

// disabledPlugins are the CRI plugins (no harness needs them; kiln is also
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
	quoted := make([]string, len(disabledPlugins))
	for i, p := range disabledPlugins {
		quoted[i] = strconv.Quote(p)
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
	if err := os.WriteFile(c.ConfigPath, []byte(config), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command(filepath.Join(c.Tools, "containerd"), "--config", c.ConfigPath, "--log-level", c.LogLevel)
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
