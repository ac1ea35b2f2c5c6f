package builder

import (
	"context"
	"runtime/debug"

	"github.com/containerd/platforms"
	"github.com/moby/buildkit/util/archutil"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/kiln-build/kiln/store"
)

// Info describes where kiln builds and what it can build.
type Info struct {
	Address            string   `json:"address"`
	ContainerdVersion  string   `json:"containerdVersion"`
	ContainerdRevision string   `json:"containerdRevision"`
	Namespace          string   `json:"namespace"`
	Snapshotter        string   `json:"snapshotter"`
	Root               string   `json:"root"`
	HostPlatform       string   `json:"hostPlatform"`
	Platforms          []string `json:"platforms"`
}

// GetInfo connects to containerd and probes which platforms run here. It does
// not start BuildKit or take the state lock, so it answers during a build.
func GetInfo(ctx context.Context, cfg Config) (*Info, error) {
	st, err := store.Open(ctx, cfg.Address, cfg.Namespace)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	v := st.Version()
	return &Info{
		Address:            st.Address(),
		ContainerdVersion:  v.Version,
		ContainerdRevision: v.Revision,
		Namespace:          st.Namespace(),
		Snapshotter:        cfg.Snapshotter,
		Root:               cfg.Root,
		HostPlatform:       platforms.Format(platforms.DefaultSpec()),
		Platforms:          runnablePlatforms(),
	}, nil
}

// runnablePlatforms lists the platforms whose binaries execute here,
// natively or through a binfmt_misc handler, by running probe binaries.
func runnablePlatforms() []string {
	ps := append([]ocispecs.Platform{platforms.DefaultSpec()}, archutil.SupportedPlatforms(true)...)
	seen := map[string]bool{}
	var out []string
	for _, p := range ps {
		s := platforms.Format(platforms.Normalize(p))
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// BuildKitVersion returns the version of the BuildKit module linked in.
func BuildKitVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/moby/buildkit" {
				return d.Version
			}
		}
	}
	return "unknown"
}
