package request

import (
	"slices"
	"strconv"
	"strings"

	bkclient "github.com/moby/buildkit/client"

	"github.com/kiln-build/kiln/usage"
)

// The attributes each cache type reads in the BuildKit kiln embeds (v0.34):
// its remote caches, its client's local cache store and its controller. As
// with --output, BuildKit passes a key it does not know to nobody, so
// "mode=maxx" or "compresion=zstd" would be ignored in silence.
var (
	cacheCompressionAttrs = []string{"compression", "compression-level", "force-compression"}
	cacheFromAttrs        = map[string][]string{
		"local":    {"src", "digest", "tag"},
		"registry": {"ref", "registry.insecure"},
	}
	cacheToAttrs = map[string][]string{
		"local":    append([]string{"dest", "mode", "tag", "reset", "image-manifest", "oci-mediatypes", "ignore-error"}, cacheCompressionAttrs...),
		"registry": append([]string{"ref", "mode", "image-manifest", "oci-mediatypes", "ignore-error", "registry.insecure"}, cacheCompressionAttrs...),
		"inline":   {"mode"},
	}
	// cacheBoolAttrs hold true or false, read with strconv.ParseBool.
	cacheBoolAttrs = []string{"reset", "image-manifest", "oci-mediatypes", "ignore-error", "registry.insecure", "force-compression"}
)

// checkCacheAttrs refuses a key the cache type of e does not read, or a
// value BuildKit would reject only once the build has run.
func checkCacheAttrs(flag, s string, e bkclient.CacheOptionsEntry, valid map[string][]string) error {
	keys := valid[e.Type]
	for k, v := range e.Attrs {
		if !slices.Contains(keys, k) {
			return usage.Errorf("invalid %s %q: type=%s has no attribute %q; it takes %s", flag, s, e.Type, k, strings.Join(keys, ", "))
		}
		if slices.Contains(cacheBoolAttrs, k) {
			if _, err := strconv.ParseBool(v); err != nil {
				return usage.Errorf("invalid %s %q: %s must be true or false, not %q", flag, s, k, v)
			}
		}
	}
	if c, l := e.Attrs["compression"], e.Attrs["compression-level"]; c != "" || l != "" {
		if _, err := ParseCompression(c, l); err != nil {
			return usage.Errorf("invalid %s %q: %w", flag, s, err)
		}
	}
	if e.Type == "inline" && e.Attrs["mode"] == "max" {
		return usage.Errorf("invalid %s %q: inline cache holds only the final image's layers (mode=min); use type=registry or type=local for mode=max", flag, s)
	}
	return nil
}
