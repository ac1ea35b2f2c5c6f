package request

import (
	"encoding/csv"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/kiln-build/kiln/internal/safeio"
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
	if err := checkExportAttrs(s, o); err != nil {
		return Output{}, err
	}
	return o, nil
}

// resolveOutputs parses -o values and --push into outputs; with none, the
// image goes to containerd's store as always.
func (r *Request) resolveOutputs(opts *Options) error {
	for _, s := range opts.Outputs {
		o, err := ParseOutput(s)
		if err != nil {
			return err
		}
		r.Outputs = append(r.Outputs, o)
	}
	if len(r.Outputs) == 0 {
		r.Outputs = []Output{{Type: "image", Attrs: map[string]string{}}}
	}
	stdout := 0
	for i := range r.Outputs {
		o := &r.Outputs[i]
		if r.Push && o.Type == "image" {
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
		if o.Type == "docker" && len(r.Platforms) > 1 {
			return usage.Errorf("--output type=docker holds one platform, and %d were requested: use type=oci for a multi-platform archive", len(r.Platforms))
		}
		if (o.Type == "registry" || o.Attrs["push"] == "true") && len(r.Names) == 0 && o.Attrs["name"] == "" {
			return usage.Errorf("pushing needs a name: add -t registry.example.com/app:tag")
		}
	}
	if stdout > 1 {
		return usage.Errorf("only one --output can write to standard output")
	}
	for _, o := range r.Outputs {
		switch {
		case o.Dest == "-" || o.Dest == "":
		case o.Type == "local":
			if fi, err := os.Stat(o.Dest); err == nil && !fi.IsDir() {
				return usage.Errorf("--output type=local,dest=%s: %s is %s: type=local writes a directory", o.Dest, o.Dest, safeio.Kind(fi.Mode()))
			}
		default:
			if err := checkOutputFile("--output type="+o.Type+",dest=", o.Dest); err != nil {
				return err
			}
		}
	}
	for _, f := range [][2]string{{"--iidfile", r.IIDFile}, {"--metadata-file", r.MetadataFile}} {
		flag, path := f[0], f[1]
		if path == "" {
			continue
		}
		if err := checkOutputFile(flag+" ", path); err != nil {
			return err
		}
		dir := filepath.Dir(path)
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			return usage.Errorf("%s %s: directory %s does not exist: create it first", flag, path, dir)
		}
	}
	if stdout == 1 && r.Quiet {
		return usage.Errorf("-q prints the digest on standard output, which --output dest=- already uses: write the output to a file")
	}
	return nil
}

// checkOutputFile refuses, before the build, an output path kiln cannot
// write a file to: a directory, a socket or a block device. A regular file
// is replaced only when the build succeeds, and a character device or
// named pipe (/dev/null, /dev/stdout) is written in place; see
// safeio.Create. flag prefixes the path in messages.
func checkOutputFile(flag, path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return nil // created at the end; other errors are reported then
	}
	switch m := fi.Mode(); {
	case m.IsRegular(), m&fs.ModeNamedPipe != 0, m&fs.ModeCharDevice != 0:
		return nil
	case m.IsDir():
		return usage.Errorf("%s%s is a directory: name a file", flag, path)
	default:
		return usage.Errorf("%s%s is %s: name a regular file", flag, path, safeio.Kind(m))
	}
}
