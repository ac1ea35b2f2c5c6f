package request

import (
	"slices"

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
	// cacheBoolAttrs hold true or false, read with strconv.ParseBool (an
	// empty value is no boolean for any of them).
	cacheBoolAttrs = map[string]bool{"reset": false, "image-manifest": false, "oci-mediatypes": false,
		"ignore-error": false, "registry.insecure": false, "force-compression": false}
)

// checkCacheAttrs refuses a key the cache type of e does not read, or a
// value BuildKit would reject only once the build has run.
func checkCacheAttrs(flag, s string, e bkclient.CacheOptionsEntry, valid map[string][]string) error {
	keys := valid[e.Type]
	for k := range e.Attrs {
		if !slices.Contains(keys, k) {
			return unknownAttr(flag, s, e.Type, k, keys)
		}
	}
	if err := checkAttrValues(flag, s, e.Attrs, cacheBoolAttrs); err != nil {
		return err
	}
	if e.Type == "inline" && e.Attrs["mode"] == "max" {
		return usage.Errorf("invalid %s %q: inline cache holds only the final image's layers (mode=min); use type=registry or type=local for mode=max", flag, s)
	}
	return nil
}
