//go:build linux

package snapshot

import (
	"errors"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/usage"
)

// fakeChecks replaces the snapshotter checks for one test: works lists
// those that work; the others fail.
func fakeChecks(t *testing.T, works ...string) {
	t.Helper()
	saved := checks
	t.Cleanup(func() { checks = saved })
	checks = map[string]func(string) error{}
	for _, name := range Embedded {
		checks[name] = func(string) error { return errors.New(name + " refused") }
	}
	for _, name := range works {
		checks[name] = func(string) error { return nil }
	}
}

func TestChooseEmbedded(t *testing.T) {
	cases := []struct {
		name  string
		works []string
		req   EmbeddedRequest
		want  string
		why   []string
	}{
		{"overlayfs", []string{Overlayfs, FuseOverlayfs, Native}, EmbeddedRequest{Dir: "/s"}, Overlayfs,
			[]string{"the kernel mounts overlayfs in /s"}},
		{"overlayfs in a user namespace", []string{Overlayfs, Native}, EmbeddedRequest{Dir: "/s", UserNamespace: true}, Overlayfs,
			[]string{"inside kiln's user namespace"}},
		{"fuse-overlayfs", []string{FuseOverlayfs, Native}, EmbeddedRequest{Dir: "/s"}, FuseOverlayfs,
			[]string{"overlayfs cannot be mounted in /s (overlayfs refused)", "fuse-overlayfs works"}},
		{"native", []string{Native}, EmbeddedRequest{Dir: "/s"}, Native,
			[]string{"overlayfs refused", "fuse-overlayfs does not work (fuse-overlayfs refused)", "native copies every layer"}},
		{"chosen", []string{Native}, EmbeddedRequest{Dir: "/s", Name: Native}, Native, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fakeChecks(t, c.works...)
			got, err := ChooseEmbedded(c.req)
			if err != nil {
				t.Fatal(err)
			}
			if got.Name != c.want || got.Chosen != (c.req.Name != "") || got.Root != c.req.Dir {
				t.Fatalf("chose %+v, want %s", got, c.want)
			}
			for _, w := range c.why {
				if !strings.Contains(got.Reason, w) {
					t.Errorf("reason %q does not contain %q", got.Reason, w)
				}
			}
		})
	}
}

func TestChooseEmbeddedErrors(t *testing.T) {
	fakeChecks(t, Native)
	_, err := ChooseEmbedded(EmbeddedRequest{Dir: "/s", Name: "zfs"})
	var ce *ChoiceError
	if !errors.As(err, &ce) || !usage.Is(err) || err.Error() != `the embedded store has no snapshotter "zfs"` || ce.HaveList() != "overlayfs, fuse-overlayfs, native" {
		t.Fatalf("unknown snapshotter: %v, want a usage error listing the snapshotters", err)
	}
	_, err = ChooseEmbedded(EmbeddedRequest{Dir: "/s", Name: Overlayfs})
	if !errors.As(err, &ce) || err.Error() != "the overlayfs snapshotter does not work in /s: overlayfs refused" {
		t.Fatalf("overlayfs that does not work: %v", err)
	}
}

func TestNewEmbeddedNative(t *testing.T) {
	sn, err := NewEmbedded(Native, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	sn.Close()
	if _, err := NewEmbedded("zfs", t.TempDir()); err == nil || !usage.Is(err) {
		t.Fatalf("NewEmbedded(zfs) = %v, want a usage error", err)
	}
}
