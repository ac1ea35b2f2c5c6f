package builder

import (
	"strings"
	"testing"
)

func TestStateDir(t *testing.T) {
	got, err := stateDir("/var/lib/kiln", "containerd-5ce485c5-bc07-457f-8d2a-61cb41f42ab0", "k8s.io")
	if want := "/var/lib/kiln/buildkit/containerd-5ce485c5-bc07-457f-8d2a-61cb41f42ab0/k8s.io"; err != nil || got != want {
		t.Errorf("stateDir = %q, %v; want %q", got, err, want)
	}
	for _, ns := range []string{"", ".", "..", "a/b", "../x", "a..b", strings.Repeat("n", 77)} {
		if got, err := stateDir("/r", "embedded", ns); err == nil || !strings.Contains(err.Error(), "invalid namespace") {
			t.Errorf("stateDir with namespace %q = %q, %v; want an invalid namespace error", ns, got, err)
		}
	}
	if _, err := stateDir("/r", "../x", "default"); err == nil {
		t.Error("stateDir accepted a store ID that is no path component")
	}
}
