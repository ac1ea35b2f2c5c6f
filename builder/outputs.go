package builder

import (
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	bkclient "github.com/moby/buildkit/client"

	"github.com/kiln-build/kiln/store"
	"github.com/kiln-build/kiln/usage"
)

// Output is one parsed -o/--output value.
type Output struct {
	// Type is image, registry, oci, docker, tar or local.
	Type string
	// Dest is the file (oci, docker, tar; "-" is standard output) or
	// directory (local) to write.
	Dest string
	// Attrs are the remaining key=value pairs, passed to BuildKit's exporter.
	Attrs map[string]string
}

// ParseOutput parses docker's --output syntax: "type=oci,dest=out.tar", or
// the shorthands "DIR" (type=local) and "-" (a tar on standard output).
func ParseOutput(s string) (Output, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Output{}, usage.Errorf("empty --output: use for example type=oci,dest=image.tar or type=local,dest=DIR")
	}
	if s == "-" {
		return Output{Type: "tar", Dest: "-", Attrs: map[string]string{}}, nil
	}
	if !strings.Contains(s, "=") {
		return Output{Type: "local", Dest: s, Attrs: map[string]string{}}, nil
	}
	fields, err := csv.NewReader(strings.NewReader(s)).Read()
	if err != nil {
		return Output{}, usage.Errorf("invalid --output %q: %w", s, err)
	}
	o := Output{Attrs: map[string]string{}}
	for _, f := range fields {
		k, v, ok := strings.Cut(f, "=")
		if !ok || k == "" {
			return Output{}, usage.Errorf("invalid --output %q: %q is not KEY=VALUE", s, f)
		}
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "type":
			o.Type = v
		case "dest":
			o.Dest = v
		default:
			o.Attrs[k] = v
		}
	}
	switch o.Type {
	case "image", "registry":
	case "oci", "docker", "tar", "local":
		if o.Dest == "" {
			return Output{}, usage.Errorf("--output type=%s needs dest=PATH (\"-\" for standard output with oci, docker and tar)", o.Type)
		}
		if o.Type == "local" && o.Dest == "-" {
			return Output{}, usage.Errorf("--output type=local writes a directory: give dest=DIR, or use type=tar,dest=- for standard output")
		}
	case "":
		return Output{}, usage.Errorf("invalid --output %q: missing type=; use image, registry, oci, docker, tar or local", s)
	default:
		return Output{}, usage.Errorf("unknown --output type %q: use image, registry, oci, docker, tar or local", o.Type)
	}
	return o, nil
}

// resolveOutputs parses -o values and --push into outputs; with none, the
// image goes to containerd's store as always.
func (r *request) resolveOutputs() error {
	for _, s := range r.opts.Outputs {
		o, err := ParseOutput(s)
		if err != nil {
			return err
		}
		r.outputs = append(r.outputs, o)
	}
	if len(r.outputs) == 0 {
		r.outputs = []Output{{Type: "image", Attrs: map[string]string{}}}
	}
	stdout := 0
	for i := range r.outputs {
		o := &r.outputs[i]
		if r.opts.Push && o.Type == "image" {
			o.Attrs["push"] = "true"
		}
		if o.Dest == "-" {
			stdout++
		}
		if n := o.Attrs["name"]; n != "" {
			names, err := store.NormalizeNames(strings.Split(n, ","))
			if err != nil {
				return usage.Wrap(fmt.Errorf("invalid name in --output: %w", err))
			}
			o.Attrs["name"] = strings.Join(names, ",")
		}
		if o.Type == "docker" && len(r.platforms) > 1 {
			return usage.Errorf("--output type=docker holds one platform, and %d were requested: use type=oci for a multi-platform archive", len(r.platforms))
		}
		if (o.Type == "registry" || o.Attrs["push"] == "true") && len(r.names) == 0 && o.Attrs["name"] == "" {
			return usage.Errorf("pushing needs a name: add -t registry.example.com/app:tag")
		}
	}
	if stdout > 1 {
		return usage.Errorf("only one --output can write to standard output")
	}
	if stdout == 1 && r.opts.Quiet {
		return usage.Errorf("-q prints the digest on standard output, which --output dest=- already uses: write the output to a file")
	}
	return nil
}

// exports turns the outputs into BuildKit export entries.
func (r *request) exports() ([]bkclient.ExportEntry, []io.Closer, error) {
	var entries []bkclient.ExportEntry
	var closers []io.Closer
	for _, o := range r.outputs {
		e := bkclient.ExportEntry{Type: o.Type, Attrs: map[string]string{}}
		for k, v := range o.Attrs {
			e.Attrs[k] = v
		}
		switch o.Type {
		case "image", "registry":
			e = r.imageEntry(o)
		case "local":
			if err := os.MkdirAll(o.Dest, 0o755); err != nil {
				return nil, closers, fmt.Errorf("creating output directory %s: %w", o.Dest, err)
			}
			e.OutputDir = o.Dest
		default:
			w, err := openDest(o.Dest, r.opts.Stdout)
			if err != nil {
				return nil, closers, err
			}
			closers = append(closers, w)
			e.Output = func(map[string]string) (io.WriteCloser, error) { return w, nil }
			if (o.Type == "oci" || o.Type == "docker") && e.Attrs["name"] == "" && len(r.names) > 0 {
				e.Attrs["name"] = strings.Join(r.names, ",")
			}
		}
		entries = append(entries, e)
	}
	return entries, closers, nil
}

// imageEntry stores the image in containerd (and pushes it when asked).
// type=registry only pushes, as in buildx.
func (r *request) imageEntry(o Output) bkclient.ExportEntry {
	attrs := map[string]string{"store": "true", "unpack": "true"}
	if o.Type == "registry" {
		attrs = map[string]string{"store": "false", "push": "true"}
	}
	for k, v := range o.Attrs {
		attrs[k] = v
	}
	if attrs["name"] != "" {
		// already normalised by resolveOutputs
	} else if len(r.names) > 0 {
		attrs["name"] = strings.Join(r.names, ",")
	} else {
		attrs["dangling-name-prefix"] = danglingPrefix
	}
	return bkclient.ExportEntry{Type: bkclient.ExporterImage, Attrs: attrs}
}

// openDest opens an output file; "-" is standard output, kept open.
func openDest(dest string, stdout io.Writer) (io.WriteCloser, error) {
	if dest == "-" {
		return nopCloser{stdout}, nil
	}
	if dir := filepath.Dir(dest); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("creating the directory of output %s: %w", dest, err)
		}
	}
	f, err := os.Create(dest)
	if err != nil {
		return nil, fmt.Errorf("creating output %s: %w", dest, err)
	}
	return f, nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }
