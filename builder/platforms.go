package builder

import (
	"strings"

	"github.com/containerd/platforms"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
)

// formatPlatforms joins platforms as BuildKit's "platform" attribute wants.
func formatPlatforms(ps []ocispecs.Platform) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = platforms.Format(p)
	}
	return strings.Join(s, ",")
}

// describePlatforms is formatPlatforms for messages.
func describePlatforms(ps []ocispecs.Platform) string {
	return strings.ReplaceAll(formatPlatforms(ps), ",", ", ")
}
