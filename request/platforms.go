package request

import (
	"slices"
	"strings"

	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/kiln-build/kiln/emulation"
	"github.com/kiln-build/kiln/platform"
	"github.com/kiln-build/kiln/usage"
)

// ParseBuildable parses --platform values with platform.ParseList and
// keeps only platforms kiln can build: Linux ones whose architecture is in
// the emulation table. Parsing itself is the platform package's job; this
// is the build's policy on top.
func ParseBuildable(values []string) ([]ocispecs.Platform, error) {
	ps, err := platform.ParseList(values)
	if err != nil {
		return nil, err
	}
	for _, p := range ps {
		if err := checkBuildable(p); err != nil {
			return nil, err
		}
	}
	return ps, nil
}

// parseBuildableOne is ParseBuildable for a value that must name one
// platform, such as the one in "manifest[linux/arm64]:KEY=VALUE".
func parseBuildableOne(s string) (ocispecs.Platform, error) {
	ps, err := ParseBuildable([]string{s})
	if err != nil {
		return ocispecs.Platform{}, err
	}
	if len(ps) != 1 {
		return ocispecs.Platform{}, usage.Errorf("invalid platform %q: give one platform, like linux/arm64", s)
	}
	return ps[0], nil
}

// checkBuildable rejects platforms no Linux runtime here could run.
func checkBuildable(p ocispecs.Platform) error {
	s := platform.Format(p)
	if p.OS != "linux" {
		return usage.Errorf("unsupported platform %q: kiln builds Linux images only (linux/amd64, linux/arm64, ...)", s)
	}
	// The emulation table lists every architecture kiln can build for,
	// natively or under QEMU; anything else is a typo.
	if _, err := emulation.LookupArch(p); err != nil {
		return usage.Errorf("unknown architecture %q in platform %q: use one of %s", p.Architecture, s, strings.Join(architectures(), ", "))
	}
	return nil
}

func architectures() []string {
	var out []string
	for _, a := range emulation.Arches() {
		if !slices.Contains(out, a.Platform.Architecture) {
			out = append(out, a.Platform.Architecture)
		}
	}
	return out
}
