package engine

import (
	"context"
	"path/filepath"

	"github.com/kiln-build/kiln/store"
)

// historySubdir holds the build records of a namespace (package history)
// in its state directory, beside BuildKit's state: like the build cache,
// the records describe builds of one namespace of one store.
const historySubdir = "history"

// HistoryDir returns the directory of the build records of the engine's
// namespace.
func (e *Engine) HistoryDir() string { return filepath.Join(e.state, historySubdir) }

// HistoryDir returns the directory of the build records of cfg's store and
// namespace without starting BuildKit or taking a lock, so that the records
// can be read during a build. Records are written and removed there, so
// cfg.Root must be kiln's own first (see claimRoot): it is claimed, created
// when missing, and the directory returned is under its real path. With
// containerd it asks containerd for the ID that names the state directory.
func HistoryDir(ctx context.Context, cfg Config) (string, error) {
	sel, err := cfg.Selection()
	if err != nil {
		return "", err
	}
	if cfg, err = cfg.withClaimedRoot(); err != nil {
		return "", err
	}
	id := store.EmbeddedID
	if !sel.Embedded() {
		st, err := store.Open(ctx, cfg.Address, cfg.Namespace)
		if err != nil {
			return "", err
		}
		defer st.Close()
		if id, err = st.ID(ctx); err != nil {
			return "", err
		}
	}
	state, err := stateDir(cfg.Root, id, cfg.Namespace)
	if err != nil {
		return "", err
	}
	return filepath.Join(state, historySubdir), nil
}
