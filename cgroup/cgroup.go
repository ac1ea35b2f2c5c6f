// Package cgroup gives one build a budget: a cgroup of its own, under kiln's
// cgroup parent, that holds every step's cgroup, with a memory limit and a
// CPU quota for all of them together. The kiln process itself stays outside,
// so the kernel's OOM killer takes a step, never kiln.
//
// It works on cgroup v1 (including hybrid hosts, where v1 holds the memory
// controller) and v2, as root; Probe says what the host's kernel enforces,
// and why not (a kernel booted without the memory controller, as Raspberry Pi
// OS is by default).
package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Limits is what a build's steps may use together.
type Limits struct {
	// Memory is the memory limit in bytes (swap included); 0 for none.
	Memory int64
	// CPUs is the CPU quota in CPUs (1.5 is one and a half); 0 for none.
	CPUs float64
}

// IsZero reports whether the limits limit nothing.
func (l Limits) IsZero() bool { return l.Memory == 0 && l.CPUs == 0 }

// Version names a cgroup hierarchy layout.
const (
	V1       = "v1"
	V1Hybrid = "v1 (hybrid)"
	V2       = "v2"
	None     = "none"
)

// Controller says whether the kernel offers one cgroup controller here.
type Controller struct {
	// Name is the controller: memory or cpu.
	Name string `json:"name"`
	// Available is true when limits set with it are enforced.
	Available bool `json:"available"`
	// Version is the hierarchy that holds it: V1 or V2.
	Version string `json:"version,omitempty"`
	// Dir is where it is mounted: the v1 hierarchy's mount point, or the
	// v2 mount.
	Dir string `json:"dir,omitempty"`
	// Why says, when it is not available, why and what to do.
	Why string `json:"why,omitempty"`
}

// Host describes the cgroups of this host.
type Host struct {
	// Version is the layout: V1, V1Hybrid, V2 or None.
	Version string `json:"version"`
	Memory  Controller
	CPU     Controller
	// v1 are the mount points of every v1 hierarchy: runc creates a
	// step's cgroup in each, so removing a build's cgroup visits them all.
	v1 []string
	// v2 is the cgroup2 mount point, if any.
	v2 string
}

// mount is a cgroup file system from /proc/self/mountinfo.
type mount struct {
	dir     string
	v2      bool
	options []string // for v1: the controllers (and name=...) it holds
}

// files are the places the package reads the kernel's state from; tests
// point them elsewhere.
var files = struct {
	mountinfo, cgroups, cmdline, self string
}{"/proc/self/mountinfo", "/proc/cgroups", "/proc/cmdline", "/proc/self/cgroup"}

// Probe reads the host's cgroup mounts and the controllers the kernel
// offers. It never fails: what it cannot find is reported as unavailable,
// with the reason.
func Probe() Host {
	mounts, err := readMounts(files.mountinfo)
	h := Host{Version: None}
	if err != nil {
		why := fmt.Sprintf("cannot read the cgroup mounts: %v", err)
		h.Memory = Controller{Name: "memory", Why: why}
		h.CPU = Controller{Name: "cpu", Why: why}
		return h
	}
	var v2Controllers []string
	for _, m := range mounts {
		if m.v2 {
			if h.v2 == "" || m.dir == "/sys/fs/cgroup" {
				h.v2 = m.dir
			}
			continue
		}
		h.v1 = append(h.v1, m.dir)
	}
	if h.v2 != "" {
		dt, _ := os.ReadFile(filepath.Join(h.v2, "cgroup.controllers"))
		v2Controllers = strings.Fields(string(dt))
	}
	switch {
	case len(h.v1) == 0 && h.v2 != "":
		h.Version = V2
	case len(h.v1) > 0 && h.v2 != "":
		h.Version = V1Hybrid
	case len(h.v1) > 0:
		h.Version = V1
	}
	h.Memory = h.controller("memory", mounts, v2Controllers)
	h.CPU = h.controller("cpu", mounts, v2Controllers)
	return h
}

// controller finds name in a v1 hierarchy or the v2 one.
func (h Host) controller(name string, mounts []mount, v2Controllers []string) Controller {
	c := Controller{Name: name}
	for _, m := range mounts {
		if !m.v2 && slices.Contains(m.options, name) {
			c.Available, c.Version, c.Dir = true, V1, m.dir
			return c
		}
	}
	if h.v2 != "" && slices.Contains(v2Controllers, name) {
		c.Available, c.Version, c.Dir = true, V2, h.v2
		return c
	}
	c.Why = missingWhy(name, h.Version)
	return c
}

// missingWhy explains a controller the kernel does not offer: disabled on
// the kernel command line (Raspberry Pi OS disables memory by default),
// not built in, or not mounted.
func missingWhy(name, version string) string {
	enabled, known := kernelController(name)
	switch {
	case version == None:
		return "no cgroup file system is mounted at /sys/fs/cgroup"
	case known && !enabled:
		if name == "memory" {
			return "the kernel's memory controller is disabled: add \"cgroup_memory=1 cgroup_enable=memory\" to the kernel command line (on Raspberry Pi OS to /boot/firmware/cmdline.txt, before Bookworm /boot/cmdline.txt) and reboot"
		}
		return fmt.Sprintf("the kernel's %s controller is disabled: add \"cgroup_enable=%s\" to the kernel command line and reboot", name, name)
	case !known:
		return fmt.Sprintf("the kernel has no %s controller (it was built without it)", name)
	}
	return fmt.Sprintf("the %s controller is not mounted under /sys/fs/cgroup (it may be in use by another cgroup hierarchy)", name)
}

// kernelController reads /proc/cgroups: whether the kernel knows the
// controller, and whether it is enabled (the kernel command line's
// cgroup_disable= and cgroup_enable= decide).
func kernelController(name string) (enabled, known bool) {
	f, err := os.Open(files.cgroups)
	if err != nil {
		return false, false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) == 4 && fields[0] == name {
			return fields[3] == "1", true
		}
	}
	return false, false
}

// Enforceable says why limits cannot be enforced on this host, or nil.
func (h Host) Enforceable(l Limits) error {
	if l.Memory > 0 && !h.Memory.Available {
		return h.Memory.missing("memory")
	}
	if l.CPUs > 0 && !h.CPU.Available {
		return h.CPU.missing("cpu")
	}
	return nil
}

// missing is the error of a controller that is not available.
func (c Controller) missing(name string) error {
	if c.Why == "" {
		return fmt.Errorf("the kernel offers no %s controller here", name)
	}
	return errors.New(c.Why)
}

// removeTree removes the cgroup directory dir and every cgroup below it,
// deepest first. A cgroup directory holds only the kernel's files, which
// go with it: rmdir is how cgroups are removed. A cgroup that still has
// processes stays (EBUSY), and so does dir.
func removeTree(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		// Only directories: the cgroup file system has no symbolic links.
		if e.IsDir() {
			if err := removeTree(filepath.Join(dir, e.Name())); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
