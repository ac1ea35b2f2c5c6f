package store

import (
	"strings"
	"testing"
)

func TestCheckVersion(t *testing.T) {
	for v, tooOld := range map[string]bool{
		"v2.4.2": false, "1.6.20": false, "v1.7.0-rc.1": false, "2.0.0+unknown": false,
		"v1.5.13": true, "1.4.0": true, "v0.9": true,
		"dev": false, "": false,
	} {
		err := checkVersion("/run/containerd/containerd.sock", v)
		if (err != nil) != tooOld {
			t.Errorf("checkVersion(%q) = %v, want too old: %v", v, err, tooOld)
		}
		if err != nil && !strings.Contains(err.Error(), "containerd "+v+" at /run/containerd/containerd.sock is too old: kiln needs containerd 1.6 or newer") {
			t.Errorf("checkVersion(%q) message: %v", v, err)
		}
	}
}
