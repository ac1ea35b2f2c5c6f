package builder

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	bkclient "github.com/moby/buildkit/client"

	"github.com/kiln-build/kiln/internal/safeio"
	"github.com/kiln-build/kiln/request"
)

// exports turns the outputs into BuildKit export entries.
func exports(r *request.Request) ([]bkclient.ExportEntry, []io.Closer, error) {
	var entries []bkclient.ExportEntry
	var closers []io.Closer
	for _, o := range r.Outputs {
		e := bkclient.ExportEntry{Type: o.Type, Attrs: map[string]string{}}
		for k, v := range o.Attrs {
			e.Attrs[k] = v
		}
		switch o.Type {
		case "image", "registry":
			e = imageEntry(r, o)
		case "local":
			if err := os.MkdirAll(o.Dest, 0o755); err != nil {
				return nil, closers, fmt.Errorf("creating output directory %s: %w", o.Dest, err)
			}
			e.OutputDir = o.Dest
		default:
			w, err := openDest(o.Dest, r.Stdout)
			if err != nil {
				return nil, closers, err
			}
			closers = append(closers, w)
			e.Output = func(map[string]string) (io.WriteCloser, error) { return exportWriter{w}, nil }
			if (o.Type == "oci" || o.Type == "docker") && e.Attrs["name"] == "" && len(r.Names) > 0 {
				e.Attrs["name"] = strings.Join(r.Names, ",")
			}
		}
		entries = append(entries, e)
	}
	return entries, closers, nil
}

// imageEntry stores the image in containerd (and pushes it when asked).
// type=registry only pushes, as in buildx.
func imageEntry(r *request.Request, o request.Output) bkclient.ExportEntry {
	attrs := map[string]string{"store": "true", "unpack": "true"}
	if o.Type == "registry" {
		attrs = map[string]string{"store": "false", "push": "true"}
	}
	for k, v := range o.Attrs {
		attrs[k] = v
	}
	if attrs["name"] != "" {
		// already normalised by resolveOutputs
	} else if len(r.Names) > 0 {
		attrs["name"] = strings.Join(r.Names, ",")
	} else {
		attrs["dangling-name-prefix"] = danglingPrefix
	}
	return bkclient.ExportEntry{Type: bkclient.ExporterImage, Attrs: attrs}
}

// openDest opens an output file; "-" is standard output, kept open. A file
// is written beside dest under a temporary name and replaces dest only when
// the whole build succeeded (commitOutputs): a failed or interrupted build
// leaves dest as it was. Closing an uncommitted file removes it.
func openDest(dest string, stdout io.Writer) (io.WriteCloser, error) {
	if dest == "-" {
		return nopCloser{stdout}, nil
	}
	if dir := filepath.Dir(dest); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("creating the directory of output %s: %w", dest, err)
		}
	}
	f, err := safeio.Create(dest, 0o666)
	if err != nil {
		return nil, fmt.Errorf("creating output %s: %w", dest, err)
	}
	return f, nil
}

// exportWriter is what BuildKit's session writes an export to. BuildKit
// closes it when the export is written, before the build as a whole has
// succeeded, so its Close does nothing: the file is committed or removed
// once the solve returns.
type exportWriter struct{ io.Writer }

func (exportWriter) Close() error { return nil }

// commitOutputs makes the files of a successful build whole under their
// names (see openDest).
func commitOutputs(closers []io.Closer) error {
	for _, c := range closers {
		if f, ok := c.(*safeio.File); ok {
			if err := f.Commit(); err != nil {
				return fmt.Errorf("writing output %s: %w", f.Name(), err)
			}
		}
	}
	return nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// closeAll closes what a solve's options opened: the contexts, which print
// their warnings, and the output files not committed, which are removed.
func closeAll(closers []io.Closer) {
	for _, c := range closers {
		c.Close()
	}
}
