package request

import (
	"bytes"
	"encoding/csv"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"

	bkclient "github.com/moby/buildkit/client"
	"github.com/moby/buildkit/exporter/containerimage/exptypes"

	"github.com/kiln-build/kiln/internal/errmsg"
	"github.com/kiln-build/kiln/usage"
)

// sourceDateEpochArg is the build argument BuildKit reads SOURCE_DATE_EPOCH from.
const sourceDateEpochArg = "build-arg:SOURCE_DATE_EPOCH"

// Layer compressions accepted by --compression.
var compressions = []string{"gzip", "zstd", "estargz", "uncompressed"}

// ParseSourceDateEpoch checks a SOURCE_DATE_EPOCH value: whole seconds
// since 1970, as reproducible-builds.org defines it.
func ParseSourceDateEpoch(s string) (int64, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < 0 {
		return 0, usage.Errorf("invalid SOURCE_DATE_EPOCH %q: use whole seconds since 1970, e.g. $(git log -1 --format=%%ct)", s)
	}
	return n, nil
}

// ParseAttest parses an --attest value, "type=provenance[,mode=min|max,...]",
// into the frontend attribute BuildKit reads ("attest:provenance") and its
// value; disabled=true returns an empty key.
func ParseAttest(s string) (key, value string, err error) {
	fields, err := splitFields("--attest", s)
	if err != nil {
		return "", "", err
	}
	typ, unknown := "", ""
	var rest []string
	for _, f := range fields {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return "", "", usage.Errorf("invalid --attest %q: %q is not KEY=VALUE; use type=provenance,mode=max", s, f)
		}
		switch k = strings.ToLower(strings.TrimSpace(k)); k {
		case "type":
			typ = v
		case "disabled":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return "", "", usage.Errorf("invalid --attest %q: disabled must be true or false", s)
			}
			if b {
				return "", "", nil
			}
		case "mode":
			if v != "min" && v != "max" {
				return "", "", usage.Errorf("invalid --attest %q: mode must be min or max, not %q", s, v)
			}
			rest = append(rest, f)
		case "builder-id", "version", "filename":
			rest = append(rest, k+"="+v)
		case "reproducible", "capture-usage", "complete-materials", "inline-only":
			if _, err := strconv.ParseBool(v); err != nil {
				return "", "", usage.Errorf("invalid --attest %q: %s must be true or false", s, k)
			}
			rest = append(rest, k+"="+v)
		default:
			if unknown == "" {
				unknown = k
			}
		}
	}
	switch typ {
	case "provenance":
		if unknown != "" {
			// BuildKit's provenance reads only the keys above and would
			// ignore a misspelt one in silence.
			return "", "", usage.Errorf("invalid --attest %q: unknown key %q; type=provenance takes mode, builder-id, reproducible, version, filename, inline-only, capture-usage and complete-materials", s, unknown)
		}
	case "":
		return "", "", usage.Errorf("invalid --attest %q: missing type=; use type=provenance", s)
	case "sbom":
		return "", "", usage.Errorf("--attest type=sbom is not supported: it needs a scanner image from a registry; kiln attaches type=provenance")
	default:
		return "", "", usage.Errorf("unknown --attest type %q: kiln attaches type=provenance", typ)
	}
	return "attest:provenance", joinCSV(rest), nil
}

// ParseProvenance parses --provenance, buildx's shorthand: a boolean, or
// the options of --attest type=provenance (mode=max). "true" means mode=min.
func ParseProvenance(s string) (key, value string, err error) {
	if b, err := strconv.ParseBool(s); err == nil {
		if !b {
			return "", "", nil
		}
		return "attest:provenance", "mode=min", nil
	}
	return ParseAttest("type=provenance," + s)
}

// annotationSpec is [TYPE[,TYPE...]][\[PLATFORM\]]:KEY=VALUE, as buildx writes it.
var annotationSpec = errmsg.Pattern(`^(?:([a-z-]+(?:,[a-z-]+)*)(?:\[([A-Za-z0-9_/.-]+)\])?:)?(\S+)$`)

// ParseAnnotation parses an --annotation value into the exporter
// attributes BuildKit reads: "KEY=VALUE" annotates each image manifest;
// "index:KEY=VALUE", "manifest-descriptor:...", "index-descriptor:..." and
// "manifest[linux/arm64]:..." choose where, as in buildx.
func ParseAnnotation(s string) (map[string]string, error) {
	k, v, ok := strings.Cut(s, "=")
	m := annotationSpec().FindStringSubmatch(k)
	if !ok || m == nil {
		return nil, usage.Errorf("invalid --annotation %q: use KEY=VALUE or TYPE:KEY=VALUE with TYPE manifest, index, manifest-descriptor or index-descriptor", s)
	}
	if strings.ContainsAny(m[3], "[]") {
		// What did not match TYPE[PLATFORM]: would otherwise become part
		// of the key: "manifest[linux/amd64:k" is no annotation anyone means.
		return nil, usage.Errorf("invalid --annotation %q: unbalanced or misplaced brackets; use TYPE[PLATFORM]:KEY=VALUE, e.g. manifest[linux/arm64]:org.opencontainers.image.title=app", s)
	}
	types := []string{exptypes.AnnotationManifest}
	if m[1] != "" {
		types = strings.Split(m[1], ",")
	}
	out := map[string]string{}
	for _, t := range types {
		key := exptypes.AnnotationKey{Type: t, Key: m[3]}
		switch t {
		case exptypes.AnnotationManifest, exptypes.AnnotationManifestDescriptor:
			if m[2] != "" {
				p, err := parseBuildableOne(m[2])
				if err != nil {
					return nil, usage.Errorf("invalid --annotation %q: %w", s, err)
				}
				key.Platform = &p
			}
		case exptypes.AnnotationIndex, exptypes.AnnotationIndexDescriptor:
			if m[2] != "" {
				return nil, usage.Errorf("invalid --annotation %q: only manifest and manifest-descriptor annotations can name a platform", s)
			}
		default:
			return nil, usage.Errorf("invalid --annotation %q: unknown type %q; use manifest, index, manifest-descriptor or index-descriptor", s, t)
		}
		out[key.String()] = v
	}
	return out, nil
}

// ParseCompression checks --compression and --compression-level and
// returns the exporter attributes for them. Every layer is recompressed,
// base layers included, so the image is compressed one way throughout.
func ParseCompression(kind, level string) (map[string]string, error) {
	if kind == "" && level == "" {
		return nil, nil
	}
	if kind == "" {
		kind = "gzip"
	}
	if !slices.Contains(compressions, kind) {
		return nil, usage.Errorf("invalid --compression %q: use %s", kind, strings.Join(compressions, ", "))
	}
	attrs := map[string]string{"compression": kind, "force-compression": "true"}
	if level == "" {
		return attrs, nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(level))
	lo, hi := 0, 9
	if kind == "zstd" {
		lo, hi = 1, 22
	}
	switch {
	case kind == "uncompressed":
		return nil, usage.Errorf("--compression-level does not apply to uncompressed layers")
	case err != nil || n < lo || n > hi:
		return nil, usage.Errorf("invalid --compression-level %q for %s: use %d to %d", level, kind, lo, hi)
	}
	attrs["compression-level"] = strconv.Itoa(n)
	return attrs, nil
}

// setExportAttrs maps the options that shape the exported image:
// reproducible timestamps, attestations, annotations and compression.
func (r *Request) setExportAttrs(o *Options) error {
	sde, set := o.SourceDateEpoch, o.SourceDateEpoch != ""
	if !set {
		if v, ok := r.FrontendAttrs[sourceDateEpochArg]; ok {
			sde, set = v, true
		} else if v, ok := os.LookupEnv("SOURCE_DATE_EPOCH"); ok {
			sde, set = v, true
		}
	}
	if set {
		n, err := ParseSourceDateEpoch(sde)
		if err != nil {
			return err
		}
		r.FrontendAttrs[sourceDateEpochArg] = strconv.FormatInt(n, 10)
		// Files written by steps get the epoch as their time too, so two
		// builds of the same inputs give the same digest.
		r.ExportAttrs["rewrite-timestamp"] = "true"
	}
	for _, a := range o.Attest {
		k, v, err := ParseAttest(a)
		if err != nil {
			return err
		}
		setOrDelete(r.FrontendAttrs, "attest:provenance", k, v)
	}
	if o.Provenance != "" {
		k, v, err := ParseProvenance(o.Provenance)
		if err != nil {
			return err
		}
		setOrDelete(r.FrontendAttrs, "attest:provenance", k, v)
	}
	for _, a := range o.Annotations {
		m, err := ParseAnnotation(a)
		if err != nil {
			return err
		}
		for k, v := range m {
			r.ExportAttrs[k] = v
		}
	}
	c, err := ParseCompression(o.Compression, o.CompressionLevel)
	if err != nil {
		return err
	}
	for k, v := range c {
		r.ExportAttrs[k] = v
	}
	if o.BuildkitdGzip {
		r.ExportAttrs[GzipAttr] = GzipBuildkitd
	}
	return nil
}

// GzipAttr is the exporter attribute of kiln's image exporters that says how
// new gzip layers are compressed (package layers reads it); GzipBuildkitd
// asks for buildkitd's compressor. kiln's exporters take it out before
// BuildKit's see the attributes.
const (
	GzipAttr      = "kiln.gzip"
	GzipBuildkitd = "buildkitd"
)

func setOrDelete(m map[string]string, name, key, value string) {
	if key == "" {
		delete(m, name)
		return
	}
	m[key] = value
}

func joinCSV(fields []string) string {
	sort.Strings(fields)
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	w.Write(fields) //nolint:errcheck // writes to memory
	w.Flush()
	return strings.TrimSuffix(b.String(), "\n")
}

// WithExportAttrs adds ExportAttrs to every exporter that writes an image;
// what the user set in -o wins.
func (r *Request) WithExportAttrs(entries []bkclient.ExportEntry) []bkclient.ExportEntry {
	for i, e := range entries {
		switch e.Type {
		case bkclient.ExporterImage, bkclient.ExporterOCI, bkclient.ExporterDocker:
		default:
			continue
		}
		if e.Attrs == nil {
			entries[i].Attrs = map[string]string{}
		}
		for k, v := range r.ExportAttrs {
			if _, set := entries[i].Attrs[k]; !set {
				entries[i].Attrs[k] = v
			}
		}
	}
	return entries
}
