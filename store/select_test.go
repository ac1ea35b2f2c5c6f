package store

import (
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/usage"
)

// listeningSocket listens on containerd.sock in a new temporary directory
// until the test ends: a socket there is what Select and ParseContainerdRef
// look for.
func listeningSocket(t *testing.T) (dir, sock string) {
	t.Helper()
	dir = t.TempDir()
	sock = filepath.Join(dir, "containerd.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return dir, sock
}

func TestSelect(t *testing.T) {
	dir, sock := listeningSocket(t)
	missing := filepath.Join(dir, "missing.sock")

	cases := []struct {
		name       string
		kind       string
		address    string
		addressSet bool
		want       string
		why        Why
		at         string
	}{
		{"embedded chosen", KindEmbedded, sock, true, KindEmbedded, Chosen, ""},
		{"containerd chosen", KindContainerd, missing, false, KindContainerd, Chosen, ""},
		{"auto, socket exists", KindAuto, sock, false, KindContainerd, SocketFound, sock},
		{"empty is auto", "", sock, false, KindContainerd, SocketFound, sock},
		{"auto, no socket", KindAuto, missing, false, KindEmbedded, NoSocket, missing},
		{"auto, unix scheme", KindAuto, "unix://" + missing, false, KindEmbedded, NoSocket, missing},
		// An address the user gave stays containerd's, so that a typo or a
		// stopped containerd is an error rather than a silent switch.
		{"auto, address given but missing", KindAuto, missing, true, KindContainerd, AddressGiven, missing},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sel, err := Select(c.kind, c.address, c.addressSet)
			if err != nil {
				t.Fatal(err)
			}
			if sel.Kind != c.want || sel.Why != c.why || sel.Address != c.at {
				t.Fatalf("Select = %+v, want kind %s because %s (address %q)", sel, c.want, c.why, c.at)
			}
			if sel.Embedded() != (c.want == KindEmbedded) {
				t.Fatalf("Embedded() = %v for %+v", sel.Embedded(), sel)
			}
		})
	}
}

func TestSelectInvalid(t *testing.T) {
	_, err := Select("docker", DefaultAddress, false)
	var ke *KindError
	if !errors.As(err, &ke) || ke.Kind != "docker" || !usage.Is(err) || !strings.Contains(err.Error(), "use auto, containerd or embedded") {
		t.Fatalf("Select(docker) = %v, want a usage error naming the choices", err)
	}
}
