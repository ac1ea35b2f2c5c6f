// Package platform is kiln's one parser and formatter of platforms: every
// --platform value, nodes.toml entry and message goes through it, so
// "aarch64", "arm64" and "linux/arm64/v8" mean the same everywhere.
//
// It is a leaf: it wraps containerd's platforms package and imports nothing
// of kiln but usage.
package platform

import (
	"strings"

	"github.com/containerd/platforms"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/kiln-build/kiln/usage"
)

// Parse parses one platform in any form containerd accepts ("arm64",
// "linux/arm/v7", "aarch64"), ignoring surrounding space, and returns it
// normalised. An empty or malformed value is a usage error. Parse does not
// check that kiln can build or run the platform; callers with a policy
// (builder, emulation) check that themselves.
func Parse(s string) (ocispecs.Platform, error) {
	s = strings.TrimSpace(s)
	p, err := platforms.Parse(s)
	if s == "" || err != nil {
		return ocispecs.Platform{}, usage.Errorf("invalid platform %q: give one like linux/amd64, linux/arm64 or linux/arm/v7", s)
	}
	return platforms.Normalize(p), nil
}

// ParseList parses --platform values: each may hold several platforms
// separated by commas. The result is normalised and de-duplicated in the
// order given ("arm64" and "linux/arm64/v8" are one platform); no values
// give an empty list.
func ParseList(values []string) ([]ocispecs.Platform, error) {
	var out []ocispecs.Platform
	seen := map[string]bool{}
	for _, v := range values {
		for _, s := range strings.Split(v, ",") {
			p, err := Parse(s)
			if err != nil {
				return nil, err
			}
			if key := Format(p); !seen[key] {
				seen[key] = true
				out = append(out, p)
			}
		}
	}
	return out, nil
}

// Format formats p normalised, as "linux/arm/v7". A platform without an OS
// or an architecture (a manifest that does not say) is "unknown".
func Format(p ocispecs.Platform) string {
	if p.OS == "" || p.Architecture == "" {
		return "unknown"
	}
	return platforms.Format(platforms.Normalize(p))
}

// Strings formats each platform with Format.
func Strings(ps []ocispecs.Platform) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = Format(p)
	}
	return out
}

// FormatList joins platforms with commas, as BuildKit's "platform"
// attribute and the --platform flag take them: "linux/amd64,linux/arm64".
func FormatList(ps []ocispecs.Platform) string {
	return strings.Join(Strings(ps), ",")
}

// Describe joins platforms for messages: "linux/amd64, linux/arm64".
func Describe(ps []ocispecs.Platform) string {
	return strings.Join(Strings(ps), ", ")
}
