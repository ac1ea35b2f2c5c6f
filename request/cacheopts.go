package request

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	bkclient "github.com/moby/buildkit/client"

	"github.com/kiln-build/kiln/internal/safeio"
	"github.com/kiln-build/kiln/store"
	"github.com/kiln-build/kiln/usage"
)

// ParseCacheFrom parses a --cache-from value: "type=local,src=DIR",
// "type=registry,ref=REF", or a bare REF (a registry cache or an image
// built with inline cache), as buildx accepts them.
func ParseCacheFrom(s string) (bkclient.CacheOptionsEntry, error) {
	e, err := parseCacheEntry("--cache-from", s)
	if err != nil {
		return e, err
	}
	switch e.Type {
	case "local":
		if e.Attrs["src"] == "" {
			return e, usage.Errorf("--cache-from type=local needs src=DIR, the directory a --cache-to type=local,dest=DIR wrote")
		}
	case "registry":
		if err := normalizeCacheRef("--cache-from", e); err != nil {
			return e, err
		}
	case "inline":
		return e, usage.Errorf("--cache-from type=inline is not a cache source: inline cache travels inside an image, so use --cache-from type=registry,ref=IMAGE")
	default:
		return e, usage.Errorf("unsupported --cache-from type %q: kiln reads cache of type local or registry", e.Type)
	}
	return e, checkCacheAttrs("--cache-from", s, e, cacheFromAttrs)
}

// ParseCacheTo parses a --cache-to value: "type=local,dest=DIR",
// "type=registry,ref=REF" or "type=inline", with BuildKit's options such
// as mode=max. The mode defaults to min, as in buildx.
func ParseCacheTo(s string) (bkclient.CacheOptionsEntry, error) {
	e, err := parseCacheEntry("--cache-to", s)
	if err != nil {
		return e, err
	}
	switch e.Type {
	case "local":
		if e.Attrs["dest"] == "" {
			return e, usage.Errorf("--cache-to type=local needs dest=DIR")
		}
	case "registry":
		if err := normalizeCacheRef("--cache-to", e); err != nil {
			return e, err
		}
	case "inline":
	default:
		return e, usage.Errorf("unsupported --cache-to type %q: kiln writes cache of type local, registry or inline", e.Type)
	}
	if err := checkCacheAttrs("--cache-to", s, e, cacheToAttrs); err != nil {
		return e, err
	}
	if m, ok := e.Attrs["mode"]; ok && m != "min" && m != "max" {
		return e, usage.Errorf("invalid --cache-to %q: mode must be min or max, not %q", s, m)
	}
	if _, ok := e.Attrs["mode"]; !ok && e.Type != "inline" {
		e.Attrs["mode"] = "min"
	}
	return e, nil
}

func parseCacheEntry(flag, s string) (bkclient.CacheOptionsEntry, error) {
	e := bkclient.CacheOptionsEntry{Attrs: map[string]string{}}
	if !strings.Contains(s, "=") && strings.TrimSpace(s) != "" {
		e.Type, e.Attrs["ref"] = "registry", strings.TrimSpace(s)
		return e, nil
	}
	fields, err := splitFields(flag, s)
	if err != nil {
		return e, err
	}
	for _, f := range fields {
		k, v, ok := strings.Cut(f, "=")
		k = strings.ToLower(strings.TrimSpace(k))
		if !ok || k == "" {
			return e, usage.Errorf("invalid %s %q: %q is not KEY=VALUE", flag, s, f)
		}
		if k == "type" {
			e.Type = v
		} else {
			e.Attrs[k] = v
		}
	}
	if e.Type == "" {
		return e, usage.Errorf("invalid %s %q: missing type=; use type=local, type=registry or type=inline", flag, s)
	}
	return e, nil
}

// normalizeCacheRef checks a registry cache's ref and writes it the way
// docker names images, so "localhost:5000/cache" means what it says.
func normalizeCacheRef(flag string, e bkclient.CacheOptionsEntry) error {
	ref := e.Attrs["ref"]
	if ref == "" {
		return usage.Errorf("%s type=registry needs ref=REGISTRY/REPOSITORY[:TAG]", flag)
	}
	name, err := store.NormalizeName(ref)
	if err != nil {
		return usage.Errorf("invalid %s ref: %w", flag, err)
	}
	e.Attrs["ref"] = name
	return nil
}

// resolveCache parses --cache-from and --cache-to. A local cache directory
// that does not exist yet is worth a warning, not a failure: the first build
// of a pipeline has nothing to import.
func (r *Request) resolveCache(o *Options) error {
	for _, v := range o.CacheFrom {
		e, err := ParseCacheFrom(v)
		if err != nil {
			return err
		}
		if e.Type == "local" {
			src := e.Attrs["src"]
			// BuildKit's client reads index.json whole, with no bound
			// and no way to interrupt it: only a file will do.
			_, err := safeio.CheckRegular(filepath.Join(src, "index.json"))
			var notRegular *safeio.NotRegularError
			if errors.As(err, &notRegular) {
				return usage.Errorf("--cache-from %s: %w: a local cache holds the index.json that --cache-to type=local wrote", src, err)
			}
			if err != nil {
				r.Warnings = append(r.Warnings, fmt.Sprintf("warning: --cache-from %s: no cache there yet (no index.json); building without it", src))
				continue
			}
		}
		r.CacheImports = append(r.CacheImports, e)
	}
	for _, v := range o.CacheTo {
		e, err := ParseCacheTo(v)
		if err != nil {
			return err
		}
		r.CacheExports = append(r.CacheExports, e)
	}
	return r.orderLocalCacheExport()
}

// orderLocalCacheExport puts a local cache export last and refuses a second
// one. BuildKit merges the responses of a build's cache exports in their
// order, each naming its cache manifest under the same key, and its client
// writes the merged one into the local directory's index.json: the local
// export must come last, or the index names another export's manifest, which
// the directory does not hold, and a later --cache-from silently finds nothing.
func (r *Request) orderLocalCacheExport() error {
	var local, rest []bkclient.CacheOptionsEntry
	for _, e := range r.CacheExports {
		if e.Type == "local" {
			local = append(local, e)
		} else {
			rest = append(rest, e)
		}
	}
	if len(local) > 1 {
		return usage.Errorf("--cache-to type=local is given %d times: a build writes one local cache; copy its directory for another", len(local))
	}
	// A local export that fails with ignore-error=true reports nothing, and
	// the index would name the other export's manifest.
	if len(local) == 1 && len(rest) > 0 && local[0].Attrs["ignore-error"] == "true" {
		return usage.Errorf("--cache-to type=local,ignore-error=true cannot go beside another --cache-to: leave out ignore-error, or export the local cache in a build of its own")
	}
	r.CacheExports = append(rest, local...)
	return nil
}
