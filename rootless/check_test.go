//go:build linux

package rootless

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeHost builds a system tree under a temporary directory.
func fakeHost(t *testing.T, files map[string]string) *host {
	t.Helper()
	root := t.TempDir()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return &host{root: root, uid: 1000, user: "alice", lookPath: func(string) (string, error) { return "", errors.New("not found") }}
}

// healthy is a system with everything rootless containers need.
func healthy() map[string]string {
	return map[string]string{
		"/usr/bin/newuidmap":                         "",
		"/usr/bin/newgidmap":                         "",
		"/usr/bin/rootlesskit":                       "",
		"/etc/subuid":                                "bob:100000:65536\nalice:165536:65536\n",
		"/etc/subgid":                                "bob:100000:65536\n1000:165536:65536\n",
		"/proc/sys/user/max_user_namespaces":         "63000\n",
		"/proc/sys/kernel/unprivileged_userns_clone": "1\n",
	}
}

func setuid(t *testing.T, h *host, names ...string) {
	t.Helper()
	for _, n := range names {
		if err := os.Chmod(h.path(n), 0o755|os.ModeSetuid); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCheckHealthy(t *testing.T) {
	h := fakeHost(t, healthy())
	setuid(t, h, "/usr/bin/newuidmap", "/usr/bin/newgidmap")
	if errs := h.check(); len(errs) != 0 {
		t.Fatalf("check() on a healthy system = %v", errs)
	}
}

func TestCheckProblems(t *testing.T) {
	cases := []struct {
		name   string
		change func(map[string]string)
		noSUID bool
		want   []string
	}{
		{"no newuidmap", func(f map[string]string) { delete(f, "/usr/bin/newuidmap"); delete(f, "/usr/bin/newgidmap") }, false,
			[]string{"newuidmap and newgidmap are missing, which RootlessKit needs to map subordinate ids: install the uidmap package"}},
		{"newuidmap not setuid", nil, true,
			[]string{"/usr/bin/newuidmap is neither setuid root nor has file capabilities, so it cannot map subordinate ids: reinstall the uidmap package"}},
		{"no subuid", func(f map[string]string) { f["/etc/subuid"] = "bob:100000:65536\n" }, false,
			[]string{`/etc/subuid has no subordinate uid range for alice: as root, run "usermod --add-subuids 231072-296607 --add-subgids 231072-296607 alice"`}},
		{"no subid files", func(f map[string]string) { delete(f, "/etc/subuid"); delete(f, "/etc/subgid") }, false,
			[]string{"/etc/subuid has no subordinate uid range for alice", "/etc/subgid has no subordinate gid range for alice", `"usermod --add-subuids 100000-165535 --add-subgids 100000-165535 alice"`}},
		{"small subgid", func(f map[string]string) { f["/etc/subgid"] = "alice:165536:1000\n" }, false,
			[]string{"/etc/subgid gives alice only 1000 subordinate gids, and images need 65536: as root, run"}},
		{"no rootlesskit", func(f map[string]string) { delete(f, "/usr/bin/rootlesskit") }, false,
			[]string{"rootlesskit is not installed: install the rootlesskit package"}},
		{"max_user_namespaces", func(f map[string]string) { f["/proc/sys/user/max_user_namespaces"] = "0\n" }, false,
			[]string{`user namespaces are disabled (sysctl user.max_user_namespaces = 0): as root, run "sysctl -w user.max_user_namespaces=28633"`}},
		{"unprivileged_userns_clone", func(f map[string]string) { f["/proc/sys/kernel/unprivileged_userns_clone"] = "0\n" }, false,
			[]string{`unprivileged user namespaces are disabled (sysctl kernel.unprivileged_userns_clone = 0): as root, run "sysctl -w kernel.unprivileged_userns_clone=1"`}},
		{"apparmor", func(f map[string]string) { f["/proc/sys/kernel/apparmor_restrict_unprivileged_userns"] = "1\n" }, false,
			[]string{"AppArmor restricts unprivileged user namespaces (sysctl kernel.apparmor_restrict_unprivileged_userns = 1) and has no profile for /usr/bin/rootlesskit: as root, write /etc/apparmor.d/usr.bin.rootlesskit containing",
				`"/usr/bin/rootlesskit" flags=(unconfined) { userns, }`, `"apparmor_parser -r /etc/apparmor.d/usr.bin.rootlesskit"`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			files := healthy()
			if c.change != nil {
				c.change(files)
			}
			h := fakeHost(t, files)
			if !c.noSUID {
				for _, n := range []string{"/usr/bin/newuidmap", "/usr/bin/newgidmap"} {
					if _, ok := files[n]; ok {
						setuid(t, h, n)
					}
				}
			}
			var msgs []string
			for _, err := range h.check() {
				msgs = append(msgs, err.Error())
			}
			all := strings.Join(msgs, "\n")
			for _, w := range c.want {
				if !strings.Contains(all, w) {
					t.Errorf("check() = \n%s\nwant a problem containing %q", all, w)
				}
			}
		})
	}
}

func TestCheckAppArmorProfilePresent(t *testing.T) {
	files := healthy()
	files["/proc/sys/kernel/apparmor_restrict_unprivileged_userns"] = "1\n"
	files["/etc/apparmor.d/rootlesskit"] = "profile rootlesskit /usr/bin/rootlesskit flags=(unconfined) { userns, }\n"
	h := fakeHost(t, files)
	setuid(t, h, "/usr/bin/newuidmap", "/usr/bin/newgidmap")
	if errs := h.check(); len(errs) != 0 {
		t.Fatalf("check() with a rootlesskit AppArmor profile = %v", errs)
	}
}
