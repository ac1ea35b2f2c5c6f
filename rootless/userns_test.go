//go:build linux

package rootless

import (
	"strings"
	"testing"
)

func TestIDMaps(t *testing.T) {
	h := fakeHost(t, healthy())
	setuid(t, h, "/usr/bin/newuidmap", "/usr/bin/newgidmap")
	uidMap, gidMap, problems := h.idMaps(1000, 1000)
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	// alice by name in subuid, by uid in subgid.
	if uidMap != "0 1000 1 1 165536 65536" || gidMap != "0 1000 1 1 165536 65536" {
		t.Fatalf("maps %q and %q", uidMap, gidMap)
	}

	files := healthy()
	files["/etc/subuid"] = "bob:100000:65536\n"
	delete(files, "/usr/bin/newgidmap")
	h = fakeHost(t, files)
	setuid(t, h, "/usr/bin/newuidmap")
	_, _, problems = h.idMaps(1000, 1000)
	msg := ownNamespaceError(problems).Error()
	for _, want := range []string{
		"a user namespace of its own",
		"newgidmap is missing",
		"/etc/subuid has no subordinate uid range for alice",
		"usermod --add-subuids",
		"or run kiln as root",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not say %q", msg, want)
		}
	}
}
