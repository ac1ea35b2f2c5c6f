package emulation

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/platforms"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/kiln-build/kiln/platform"
	"github.com/kiln-build/kiln/rootless"
	"github.com/kiln-build/kiln/version"
)

// Checking that a foreign platform runs means executing a probe program
// under QEMU: 20-50 ms, and kiln is one process per build. Whether it runs
// depends only on the binfmt_misc handlers (their interpreters are opened at
// registration, flag F), so kiln remembers a successful check together with
// the handlers it saw and checks again when they change. The memo lives in
// kiln's runtime directory (a tmpfs that a reboot clears) and expires after
// memoTTL regardless.

// Prepare checks that every platform of ps (the host's when ps is empty)
// runs here before a build runs any step, as Ensure does: with auto it
// registers QEMU handlers for those that do not. It returns the platforms
// BuildKit's worker should report, the host's first as its default, and
// what Ensure did (also on error: the handlers it registered stay
// registered). A successful check of a foreign platform is remembered
// (see memoKey), so that the next build with the same handlers skips it.
func Prepare(ctx context.Context, ps []ocispecs.Platform, auto bool) ([]ocispecs.Platform, Report, error) {
	host := HostPlatform()
	if len(ps) == 0 {
		ps = []ocispecs.Platform{host}
	}
	memo := anyForeign(host, ps)
	if memo {
		if key, ok := memoKey(ps); ok {
			if out, ok := recalled(key); ok {
				return out, Report{}, nil
			}
		}
	}
	rep, err := Ensure(ctx, ps, auto)
	if err != nil {
		return nil, rep, err
	}
	out := []ocispecs.Platform{host}
	for _, p := range rep.Runnable {
		if !platforms.Only(host).Match(p) {
			out = append(out, p)
		}
	}
	out = append(out, rep.Registered...)
	if memo {
		// Keyed on the handlers as they are now, including any just registered.
		if key, ok := memoKey(ps); ok {
			remember(key, out)
		}
	}
	return out, rep, nil
}

// memoTTL bounds how long a successful check is trusted.
const memoTTL = time.Hour

type memo struct {
	// Checks maps a key (see memoKey) to a successful check.
	Checks map[string]memoCheck `json:"checks"`
}

type memoCheck struct {
	Platforms []string  `json:"platforms"`
	At        time.Time `json:"at"`
}

// memoDir is where the memo lives: kiln's runtime directory.
var memoDir = rootless.RunDir

// memoPath is the memo's file; ok is false when kiln has no runtime
// directory it can trust, and then keeps no memo.
func memoPath() (path string, ok bool) {
	dir, err := memoDir()
	if err != nil {
		return "", false
	}
	return filepath.Join(dir, "emulation.json"), true
}

// memoKey identifies a check: the requested platforms and the
// binfmt_misc state this process sees (every handler's settings, in its user
// namespace, on this boot). ok is false when that state cannot be read.
func memoKey(ps []ocispecs.Platform) (key string, ok bool) {
	return memoKeyIn(BinfmtDir(), ps)
}

func memoKeyIn(dir string, ps []ocispecs.Platform) (key string, ok bool) {
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = platform.Format(p)
	}
	sort.Strings(names)
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", false
	}
	userns, err := os.Readlink("/proc/self/ns/user")
	if err != nil {
		return "", false
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00", version.Version, strings.Join(names, ","), boot, userns)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", false
	}
	for _, e := range entries { // sorted by name
		if e.Name() == "register" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return "", false
		}
		fmt.Fprintf(h, "%s\x00%s\x00", e.Name(), b)
	}
	return hex.EncodeToString(h.Sum(nil)), true
}

// recalled returns the runnable platforms of an earlier successful
// check with the same key.
func recalled(key string) ([]ocispecs.Platform, bool) {
	path, ok := memoPath()
	if !ok {
		return nil, false
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, false
	}
	// Trust only a memo of this user's own.
	if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != os.Geteuid() {
		return nil, false
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, false
	}
	var m memo
	if json.Unmarshal(b, &m) != nil {
		return nil, false
	}
	c, ok := m.Checks[key]
	if !ok || time.Since(c.At) > memoTTL || c.At.After(time.Now()) {
		return nil, false
	}
	var out []ocispecs.Platform
	for _, s := range c.Platforms {
		p, err := platform.Parse(s)
		if err != nil {
			return nil, false
		}
		out = append(out, p)
	}
	return out, len(out) > 0
}

// remember records a successful check. Failing to write it only
// costs the next build a probe.
func remember(key string, ps []ocispecs.Platform) {
	path, ok := memoPath()
	if !ok {
		return
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return
	}
	var m memo
	if b, err := os.ReadFile(path); err == nil {
		_ = json.Unmarshal(b, &m)
	}
	if m.Checks == nil {
		m.Checks = map[string]memoCheck{}
	}
	for k, c := range m.Checks {
		if time.Since(c.At) > memoTTL {
			delete(m.Checks, k)
		}
	}
	c := memoCheck{At: time.Now()}
	for _, p := range ps {
		c.Platforms = append(c.Platforms, platform.Format(p))
	}
	m.Checks[key] = c
	b, err := json.Marshal(m)
	if err != nil {
		return
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".emulation-*")
	if err != nil {
		return
	}
	_, werr := tmp.Write(b)
	if cerr := tmp.Close(); werr != nil || cerr != nil || os.Rename(tmp.Name(), path) != nil {
		os.Remove(tmp.Name())
	}
}

// anyForeign reports whether some platform is of another architecture than the
// host's, so that checking it means executing a probe.
func anyForeign(host ocispecs.Platform, ps []ocispecs.Platform) bool {
	for _, p := range ps {
		if p.Architecture != host.Architecture {
			return true
		}
	}
	return false
}
