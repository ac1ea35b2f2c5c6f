package rootless

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// minSubIDs is the size of the subordinate id range rootless containers
// need: images own files up to uid and gid 65534 (nobody).
const minSubIDs = 65536

// Check lists what keeps this user from starting a rootless containerd:
// newuidmap and newgidmap, subordinate id ranges in /etc/subuid and
// /etc/subgid, RootlessKit, and unprivileged user namespaces (the sysctls
// that disable them, AppArmor's restriction). Each error names what to
// install, which file to edit or which sysctl to set.
func Check() []error {
	return newHost().check()
}

// host is the system Check looks at; tests point root at a fake tree.
type host struct {
	root     string // "/" on a real system
	uid      int
	user     string
	lookPath func(string) (string, error)
}

func newHost() *host {
	return &host{root: "/", uid: UID(), user: userName(), lookPath: exec.LookPath}
}

func (h *host) path(p string) string { return filepath.Join(h.root, p) }

// find locates a program in PATH, or where distributions install it.
func (h *host) find(name string) (string, bool) {
	if h.root == "/" {
		if p, err := h.lookPath(name); err == nil {
			return p, true
		}
	}
	for _, dir := range []string{"/usr/bin", "/usr/sbin", "/bin", "/sbin", "/usr/local/bin"} {
		if _, err := os.Stat(h.path(filepath.Join(dir, name))); err == nil {
			return filepath.Join(dir, name), true
		}
	}
	return "", false
}

func (h *host) check() []error {
	var errs []error
	errs = append(errs, h.checkIDMaps()...)
	errs = append(errs, h.checkSubIDs()...)
	if _, ok := h.find("rootlesskit"); !ok {
		errs = append(errs, errors.New("rootlesskit is not installed: install the rootlesskit package (and slirp4netns for a network namespace of its own)"))
	}
	errs = append(errs, h.checkUserNamespaces()...)
	return errs
}

// checkIDMaps checks newuidmap and newgidmap, which RootlessKit uses to map
// the subordinate ids: they must exist and be setuid root or carry file
// capabilities.
func (h *host) checkIDMaps() []error {
	var missing []string
	var errs []error
	for _, name := range []string{"newuidmap", "newgidmap"} {
		p, ok := h.find(name)
		if !ok {
			missing = append(missing, name)
			continue
		}
		fi, err := os.Stat(h.path(p))
		if err != nil {
			continue
		}
		if fi.Mode()&os.ModeSetuid == 0 && !hasFileCaps(h.path(p)) {
			errs = append(errs, fmt.Errorf("%s is neither setuid root nor has file capabilities, so it cannot map subordinate ids: reinstall the uidmap package", p))
		}
	}
	if len(missing) > 0 {
		verb := "are"
		if len(missing) == 1 {
			verb = "is"
		}
		errs = append([]error{fmt.Errorf("%s %s missing, which RootlessKit needs to map subordinate ids: install the uidmap package (shadow-utils on Fedora)", strings.Join(missing, " and "), verb)}, errs...)
	}
	return errs
}

func hasFileCaps(path string) bool {
	sz, err := unix.Getxattr(path, "security.capability", nil)
	return err == nil && sz > 0
}

// subIDRange is one line of /etc/subuid or /etc/subgid.
type subIDRange struct {
	owner        string
	start, count int
}

func readSubIDs(path string) ([]subIDRange, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []subIDRange
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		parts := strings.Split(line, ":")
		if len(parts) != 3 {
			continue
		}
		start, err1 := strconv.Atoi(parts[1])
		count, err2 := strconv.Atoi(parts[2])
		if err1 != nil || err2 != nil {
			continue
		}
		out = append(out, subIDRange{owner: parts[0], start: start, count: count})
	}
	return out, sc.Err()
}

// checkSubIDs checks that the user owns at least minSubIDs subordinate uids
// and gids, and suggests a free range when not.
func (h *host) checkSubIDs() []error {
	var errs []error
	next := 100000
	type finding struct {
		file, kind string
		count      int
	}
	var short []finding
	for _, kind := range []string{"uid", "gid"} {
		file := "/etc/sub" + kind
		ranges, err := readSubIDs(h.path(file))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("reading %s: %w", file, err))
			continue
		}
		total := 0
		for _, r := range ranges {
			if r.owner == h.user || r.owner == strconv.Itoa(h.uid) {
				total += r.count
			}
			if end := r.start + r.count; end > next {
				next = end
			}
		}
		if total < minSubIDs {
			short = append(short, finding{file, kind, total})
		}
	}
	if len(short) == 0 {
		return errs
	}
	fix := fmt.Sprintf("as root, run \"usermod --add-subuids %d-%d --add-subgids %d-%d %s\"", next, next+minSubIDs-1, next, next+minSubIDs-1, h.user)
	for _, s := range short {
		if s.count == 0 {
			errs = append(errs, fmt.Errorf("%s has no subordinate %s range for %s: %s", s.file, s.kind, h.user, fix))
		} else {
			errs = append(errs, fmt.Errorf("%s gives %s only %d subordinate %ss, and images need %d: %s", s.file, h.user, s.count, s.kind, minSubIDs, fix))
		}
	}
	return errs
}

// readSysctl returns the value of the sysctl at /proc/sys/<path>, or "".
func (h *host) readSysctl(path string) string {
	b, err := os.ReadFile(h.path(filepath.Join("/proc/sys", path)))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// checkUserNamespaces checks the sysctls that disable unprivileged user
// namespaces and Ubuntu's AppArmor restriction of them.
func (h *host) checkUserNamespaces() []error {
	var errs []error
	if h.readSysctl("user/max_user_namespaces") == "0" {
		errs = append(errs, errors.New("user namespaces are disabled (sysctl user.max_user_namespaces = 0): as root, run \"sysctl -w user.max_user_namespaces=28633\" and set it in /etc/sysctl.d/ to keep it"))
	}
	if h.readSysctl("kernel/unprivileged_userns_clone") == "0" {
		errs = append(errs, errors.New("unprivileged user namespaces are disabled (sysctl kernel.unprivileged_userns_clone = 0): as root, run \"sysctl -w kernel.unprivileged_userns_clone=1\" and set it in /etc/sysctl.d/ to keep it"))
	}
	if h.readSysctl("kernel/apparmor_restrict_unprivileged_userns") == "1" {
		rk, ok := h.find("rootlesskit")
		if !ok {
			rk = "/usr/bin/rootlesskit"
		}
		name := strings.ReplaceAll(strings.TrimPrefix(rk, "/"), "/", ".")
		profile := filepath.Join("/etc/apparmor.d", name)
		if !h.exists(profile) && !h.exists("/etc/apparmor.d/rootlesskit") {
			errs = append(errs, fmt.Errorf("AppArmor restricts unprivileged user namespaces (sysctl kernel.apparmor_restrict_unprivileged_userns = 1) and has no profile for %s: as root, write %s containing "+
				"'abi <abi/4.0>, include <tunables/global> \"%s\" flags=(unconfined) { userns, }' and load it with \"apparmor_parser -r %s\"", rk, profile, rk, profile))
		}
	}
	return errs
}

func (h *host) exists(p string) bool {
	_, err := os.Stat(h.path(p))
	return err == nil
}
