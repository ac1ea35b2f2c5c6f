package store

import (
	"fmt"

	"github.com/distribution/reference"
)

// NormalizeName turns a name as docker accepts it into the full reference
// containerd stores: "app" is "docker.io/library/app:latest" and "me/app:1"
// is "docker.io/me/app:1". Names are stored as given, so this must happen
// before anything is written.
func NormalizeName(name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("invalid image name \"\": a name looks like \"app\", \"app:1.0\" or \"registry.example.com/team/app:1.0\"")
	}
	named, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return "", fmt.Errorf("invalid image name %q: %w; a name looks like \"app\", \"app:1.0\" or \"registry.example.com/team/app:1.0\"", name, err)
	}
	return reference.TagNameOnly(named).String(), nil
}

// NormalizeNames normalises every name and drops duplicates, keeping order.
func NormalizeNames(names []string) ([]string, error) {
	out := make([]string, 0, len(names))
	seen := map[string]bool{}
	for _, n := range names {
		full, err := NormalizeName(n)
		if err != nil {
			return nil, err
		}
		if !seen[full] {
			seen[full] = true
			out = append(out, full)
		}
	}
	return out, nil
}
