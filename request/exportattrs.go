package request

import (
	"slices"
	"strconv"
	"strings"

	bkclient "github.com/moby/buildkit/client"
	"github.com/moby/buildkit/exporter/containerimage/exptypes"

	"github.com/kiln-build/kiln/usage"
)

// The attributes each --output type passes to BuildKit's exporters, as
// the BuildKit kiln embeds (v0.34) reads them. An exporter files a key it
// does not know under metadata nobody reads, so without this check a typo
// such as "compresion=zstd" would be ignored in silence.
var (
	// imageCommitAttrs shape any image: containerimage.ImageCommitOpts.
	imageCommitAttrs = []string{"name", "oci-mediatypes", "oci-artifact", "attestation-inline", "prefer-nondist-layers",
		"compression", "force-compression", "compression-level", "rewrite-timestamp", "source-date-epoch"}
	// exporterAttrs are the keys of each type besides annotations.
	exporterAttrs = map[string][]string{
		"image": append(slices.Clone(imageCommitAttrs), "push", "push-by-digest", "registry.insecure", "unpack", "store",
			"dangling-name-prefix", "danging-name-empty-only", "name-canonical"),
		"oci":   append(slices.Clone(imageCommitAttrs), "tar"),
		"local": {"attestation-prefix", "platform-split", "mode", "src", "source-date-epoch"},
	}
	// boolAttrs hold true or false; BuildKit reads these with
	// strconv.ParseBool (an empty value means true for the marked ones).
	boolAttrs = map[string]bool{
		"oci-mediatypes": false, "oci-artifact": false, "attestation-inline": false, "prefer-nondist-layers": false,
		"rewrite-timestamp": false, "platform-split": false,
		"force-compression": true, "push": true, "push-by-digest": true, "registry.insecure": true, "unpack": true,
		"store": true, "danging-name-empty-only": true, "name-canonical": true, "tar": true,
	}
)

// exporterKind maps an --output type to the BuildKit exporter whose keys it
// takes: registry is the image exporter, docker the OCI one, tar the local.
func exporterKind(typ string) string {
	switch typ {
	case "registry":
		return "image"
	case "docker":
		return "oci"
	case "tar":
		return "local"
	}
	return typ
}

// checkExportAttrs refuses an --output attribute the exporter of o.Type
// does not read, or a value it would reject only after the build.
func checkExportAttrs(s string, o Output) error {
	kind := exporterKind(o.Type)
	valid := exporterAttrs[kind]
	for k := range o.Attrs {
		if kind != "local" && strings.HasPrefix(k, "annotation") {
			if a, ok, err := exptypes.ParseAnnotationKey(k); ok {
				if err != nil {
					return usage.Errorf("invalid --output %q: %s: %w", s, k, err)
				}
				if a.Key == "" {
					return usage.Errorf("invalid --output %q: %s names no annotation: use annotation.KEY=VALUE", s, k)
				}
				if a.Platform != nil {
					if _, err := parseBuildableOne(a.PlatformString()); err != nil {
						return usage.Errorf("invalid --output %q: %s: %w", s, k, err)
					}
				}
				continue
			}
		}
		if !slices.Contains(valid, k) {
			return unknownAttr("--output", s, o.Type, k, valid)
		}
	}
	if err := checkAttrValues("--output", s, o.Attrs, boolAttrs); err != nil {
		return err
	}
	if v, ok := o.Attrs["source-date-epoch"]; ok {
		if _, err := ParseSourceDateEpoch(v); err != nil {
			return usage.Errorf("invalid --output %q: %w", s, err)
		}
	}
	if v, ok := o.Attrs["mode"]; ok {
		if _, err := bkclient.ParseLocalExporterMode(v); err != nil {
			return usage.Errorf("invalid --output %q: mode must be copy or delete, not %q", s, v)
		}
	}
	return nil
}

// unknownAttr is the error for an attribute k that type typ of flag's
// value s does not read.
func unknownAttr(flag, s, typ, k string, valid []string) error {
	return usage.Errorf("invalid %s %q: type=%s has no attribute %q; it takes %s", flag, s, typ, k, strings.Join(valid, ", "))
}

// checkAttrValues refuses values BuildKit would reject only once the
// build has run: a boolean of bools that is not one (an empty value is
// true where bools says so), a compression or level it does not know.
func checkAttrValues(flag, s string, attrs map[string]string, bools map[string]bool) error {
	for k, v := range attrs {
		if emptyIsTrue, isBool := bools[k]; isBool && !(emptyIsTrue && v == "") {
			if _, err := strconv.ParseBool(v); err != nil {
				return usage.Errorf("invalid %s %q: %s must be true or false, not %q", flag, s, k, v)
			}
		}
	}
	if c, l := attrs["compression"], attrs["compression-level"]; c != "" || l != "" {
		if _, err := ParseCompression(c, l); err != nil {
			return usage.Errorf("invalid %s %q: %w", flag, s, err)
		}
	}
	return nil
}
