//go:build linux

package snapshot

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/usage"
)

var (
	all      = []Plugin{{ID: "native"}, {ID: "overlayfs"}, {ID: "blockfile", Err: "no scratch file generator: skip plugin"}}
	withFuse = append([]Plugin{{ID: "fuse-overlayfs"}}, all...)
	ok       = func() error { return nil }
	refuse   = func() error { return errors.New("mounting overlayfs: operation not permitted") }
)

func TestChoose(t *testing.T) {
	cases := []struct {
		name    string
		plugins []Plugin
		req     Request
		want    string
		wantWhy string
	}{
		{"rootful", all, Request{}, Overlayfs, "containerd's default"},
		{"rootless new kernel", all, Request{Rootless: true, Kernel: "6.18.1", ProbeOverlay: ok}, Overlayfs, "Linux 6.18.1 mounts overlayfs inside RootlessKit's user namespace"},
		{"rootless old kernel with fuse", withFuse, Request{Rootless: true, Kernel: "5.10.0", ProbeOverlay: refuse, FuseInstalled: true}, FuseOverlayfs,
			"Linux 5.10.0 cannot mount overlayfs inside RootlessKit's user namespace (5.11 or newer can): mounting overlayfs: operation not permitted; containerd has the fuse-overlayfs snapshotter"},
		{"rootless old kernel, fuse not configured", all, Request{Rootless: true, Kernel: "5.10.0", ProbeOverlay: refuse, FuseInstalled: true}, Native,
			"fuse-overlayfs is installed but containerd has no fuse-overlayfs snapshotter (configure containerd-fuse-overlayfs as a proxy plugin to use it); native copies every layer"},
		{"rootless old kernel, no fuse", all, Request{Rootless: true, Kernel: "5.10.0", ProbeOverlay: refuse}, Native, "fuse-overlayfs is not installed"},
		{"overlayfs failed to load", []Plugin{{ID: "native"}, {ID: "overlayfs", Err: "/var/lib/containerd does not support d_type"}}, Request{}, Native,
			"containerd's overlayfs snapshotter did not load (/var/lib/containerd does not support d_type)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Choose(c.plugins, c.req)
			if err != nil {
				t.Fatal(err)
			}
			if got.Name != c.want || got.Chosen || !strings.Contains(got.Reason, c.wantWhy) {
				t.Errorf("Choose = %+v, want %s because %q", got, c.want, c.wantWhy)
			}
		})
	}
	rooted := []Plugin{{ID: "native", Root: "/c/native"}, {ID: "overlayfs", Root: "/c/overlayfs"}}
	if got, err := Choose(rooted, Request{}); err != nil || got.Root != "/c/overlayfs" {
		t.Errorf("Choose gives Root %q (%v), want the overlayfs plugin's /c/overlayfs", got.Root, err)
	}
	got, err := Choose(withFuse, Request{Name: "fuse-overlayfs", Rootless: true, ProbeOverlay: ok})
	if err != nil || got != (Choice{Name: FuseOverlayfs, Chosen: true}) {
		t.Errorf("Choose(asked for fuse-overlayfs) = %+v, %v", got, err)
	}
}

func TestChooseErrors(t *testing.T) {
	cases := []struct {
		name    string
		plugins []Plugin
		req     Request
		want    string
	}{
		{"unknown", all, Request{Name: "zfs"}, `containerd has no snapshotter "zfs" (it has native, overlayfs)`},
		{"did not load", all, Request{Name: "blockfile"}, "containerd's blockfile snapshotter did not load (no scratch file generator: skip plugin): fix containerd's configuration"},
		{"nothing usable", []Plugin{{ID: "overlayfs"}}, Request{Rootless: true, Kernel: "5.4.0", ProbeOverlay: refuse},
			"containerd has no snapshotter kiln can use (it has overlayfs): Linux 5.4.0 cannot mount overlayfs inside RootlessKit's user namespace"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Choose(c.plugins, c.req)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Choose error = %v, want %q", err, c.want)
			}
			if usage.Is(err) != (c.name == "unknown") {
				t.Errorf("Choose error %v: usage error %v, want %v", err, usage.Is(err), c.name == "unknown")
			}
			var ce *ChoiceError
			if errors.As(err, &ce) != (c.req.Name != "") || ce != nil && (ce.Name != c.req.Name || ce.HaveList() != "native, overlayfs") {
				t.Errorf("Choose error %v: ChoiceError %+v", err, ce)
			}
		})
	}
}

func TestKernelAtLeast(t *testing.T) {
	for rel, want := range map[string]bool{"5.11.0": true, "5.10.200-foo": false, "6.1.0-18-amd64": true, "4.19": false, "5.11-rc1": true, "x": false} {
		if got := kernelAtLeast(rel, 5, 11); got != want {
			t.Errorf("kernelAtLeast(%q, 5, 11) = %v", rel, got)
		}
	}
}

func TestProbeOverlay(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root (or RootlessKit's namespaces)")
	}
	dir := t.TempDir()
	if err := ProbeOverlay(dir); err != nil {
		t.Fatalf("ProbeOverlay as root: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("ProbeOverlay left %v in %s", entries, dir)
	}
}

// In the CRI's namespace the CRI's snapshotter goes first, when containerd
// has it loaded; otherwise kiln chooses as anywhere.
func TestChooseCRI(t *testing.T) {
	plugins := []Plugin{{ID: "overlayfs"}, {ID: "native"}, {ID: "zfs", Err: "not loaded"}}
	c, err := Choose(plugins, Request{CRI: "native"})
	if err != nil || c.Name != "native" || !strings.Contains(c.Reason, "CRI") {
		t.Errorf("Choose with the CRI's native = %+v, %v", c, err)
	}
	if c, _ := Choose(plugins, Request{CRI: "zfs"}); c.Name != "overlayfs" {
		t.Errorf("Choose with the CRI's unloaded zfs = %+v, want overlayfs", c)
	}
	if c, _ := Choose(plugins, Request{CRI: "native", Name: "overlayfs"}); c.Name != "overlayfs" {
		t.Errorf("--snapshotter overlayfs in the CRI's namespace = %+v, want the user's choice", c)
	}
}
