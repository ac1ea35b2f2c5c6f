package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/containerd/containerd/v2/pkg/identifiers"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/moby/buildkit/cache/metadata"

	"github.com/kiln-build/kiln/internal/owned"
	"github.com/kiln-build/kiln/store"
)

// BuildKit's state (its worker's directory with the cache metadata, the
// solver's cache.db and history.db) refers to content, snapshots and leases
// that containerd keeps per namespace, so it is only valid with the one
// namespace of the one store it was made with. Under --root it lives in
//
//	buildkit/<store ID>/<namespace>/
//
// where the store ID is "containerd-<UUID>" or "embedded" (see store.ID).
// Everything else under --root is shared: kiln.lock, tmp/ and the embedded
// store's store/, which keeps every namespace's images as a containerd does.
const stateSubdir = "buildkit"

// The worker directory of snapshotter NAME is containerd-NAME with a
// containerd and runc-NAME with the embedded store, as BuildKit's containerd
// and OCI workers name theirs. kiln versions before the state was kept per
// namespace had them, cache.db and history.db directly in --root (the
// legacy layout), shared by every namespace.
const (
	containerdWorkerPrefix = "containerd-"
	embeddedWorkerPrefix   = "runc-"
)

// stateDir is the directory of BuildKit's state for namespace of the store
// with the given ID, under root.
func stateDir(root, storeID, namespace string) (string, error) {
	if err := identifiers.Validate(namespace); err != nil {
		return "", fmt.Errorf("invalid namespace %q: use letters, digits, '.', '_' and '-': %w", namespace, err)
	}
	if err := identifiers.Validate(storeID); err != nil {
		return "", fmt.Errorf("invalid store ID %q: %w", storeID, err)
	}
	return filepath.Join(root, stateSubdir, storeID, namespace), nil
}

// workerDir is the directory of BuildKit's worker for snapshotter in the
// state directory state; prefix is containerdWorkerPrefix or
// embeddedWorkerPrefix.
func workerDir(state, prefix, snapshotter string) string {
	return filepath.Join(state, prefix+snapshotter)
}

// workerDirs lists the worker directories with the given prefix of every
// namespace of the stores matching storeGlob (a store ID or a pattern such
// as "containerd-*") under root, and those of the legacy layout.
func workerDirs(root, storeGlob, prefix string) ([]string, error) {
	var out []string
	for _, pattern := range []string{
		filepath.Join(root, stateSubdir, storeGlob, "*", prefix+"*"),
		filepath.Join(root, prefix+"*"),
	} {
		dirs, err := filepath.Glob(pattern)
		if err != nil {
			return nil, err
		}
		for _, d := range dirs {
			if isWorkerDir(d) {
				out = append(out, d)
			}
		}
	}
	return out, nil
}

// adoptLegacyState moves BuildKit state that an earlier kiln left directly
// in cfg.Root into the state directories of the namespaces its cache
// records belong to (see adoptWorkerDir), whichever namespace this process
// builds in, so that an upgrade keeps every namespace's build cache and
// leaves no record whose leases nobody would release. prefix selects the
// worker directories of the store's kind (containerdWorkerPrefix or
// embeddedWorkerPrefix). The caller holds the root's lock.
func adoptLegacyState(ctx context.Context, st *store.Store, cfg Config, prefix string, stderr io.Writer) error {
	dirs, err := legacyWorkerDirs(cfg.Root, prefix)
	if err != nil || len(dirs) == 0 {
		return err
	}
	storeID, err := st.ID(ctx)
	if err != nil {
		return err
	}
	owners, err := leaseNamespaces(ctx, st)
	if err != nil {
		return err
	}
	for _, dir := range dirs {
		if err := adoptWorkerDir(cfg, storeID, owners, dir, stderr); err != nil {
			return err
		}
	}
	// Once every worker directory is moved, each namespace has its copy of
	// the shared cache.db, and kiln never kept history in history.db.
	left, err := legacyWorkerDirs(cfg.Root, "")
	if err != nil || len(left) > 0 {
		return err
	}
	for _, name := range []string{"cache.db", "history.db"} {
		if err := os.Remove(filepath.Join(cfg.Root, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing the build cache database of an earlier kiln: %w", err)
		}
	}
	return nil
}

// legacyWorkerDirs lists the worker directories of the legacy layout in
// root whose names start with prefix; every one with "".
func legacyWorkerDirs(root, prefix string) ([]string, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("reading kiln's state directory %s: %w", root, err)
	}
	var out []string
	for _, ent := range entries {
		name := ent.Name()
		legacy := strings.HasPrefix(name, containerdWorkerPrefix) || strings.HasPrefix(name, embeddedWorkerPrefix)
		if legacy && strings.HasPrefix(name, prefix) && isWorkerDir(filepath.Join(root, name)) {
			out = append(out, filepath.Join(root, name))
		}
	}
	return out, nil
}

// isWorkerDir reports whether dir is a worker directory BuildKit made for
// kiln, which kiln may sweep, move and remove: a directory of kiln's user,
// closed to others, holding the worker's ID or its cache metadata, one of
// which BuildKit writes into it before anything else. A directory that
// merely has a worker's name is left alone.
func isWorkerDir(dir string) bool {
	if owned.Dir(dir) != nil {
		return false
	}
	for _, name := range []string{"workerid", "metadata_v2.db"} {
		if owned.File(filepath.Join(dir, name)) == nil {
			return true
		}
	}
	return false
}

// leaseNamespaces maps the ID of every lease in the store to its
// namespace. BuildKit names the lease that keeps a cache record's content
// and snapshots alive after the record, so this says in which namespace a
// record was made.
func leaseNamespaces(ctx context.Context, st *store.Store) (map[string]string, error) {
	c := st.Client()
	nss, err := c.NamespaceService().List(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing namespaces to place an earlier kiln's build cache: %w", err)
	}
	out := map[string]string{}
	for _, ns := range nss {
		list, err := c.LeasesService().List(namespaces.WithNamespace(ctx, ns))
		if err != nil {
			return nil, fmt.Errorf("listing the leases of namespace %s to place an earlier kiln's build cache: %w", ns, err)
		}
		for _, l := range list {
			out[l.ID] = ns
		}
	}
	return out, nil
}

// adoptWorkerDir gives every namespace of the store that holds cache
// records of the legacy worker directory dir a copy of it with only its
// own records, and a copy of cache.db (whose keys of records the copy lacks
// find nothing and are dropped), then removes dir. A build in one namespace then finds only
// records whose content and snapshots it has, and no record's leases are
// left without metadata to release them. Records of no namespace (whose
// store lost them, or of another containerd that shared the root) are
// dropped. dir is left where it is when none of its records is in this
// store (it may be another containerd's), or when a namespace has state of
// its own without them (a kiln of the legacy layout ran after an upgrade):
// removing it would leave their leases with nothing to release them.
func adoptWorkerDir(cfg Config, storeID string, owners map[string]string, dir string, stderr io.Writer) error {
	if _, err := unmountUnder(realPath(dir)); err != nil {
		return fmt.Errorf("removing the mounts an interrupted kiln left under %s: %w; unmount them (\"umount -R %s\") and retry", dir, err, dir)
	}
	ids, err := recordIDs(filepath.Join(dir, "metadata_v2.db"))
	if err != nil {
		return err
	}
	byNS := map[string][]string{}
	for _, id := range ids {
		if ns, ok := owners[id]; ok {
			byNS[ns] = append(byNS[ns], id)
		}
	}
	if len(ids) > 0 && len(byNS) == 0 {
		fmt.Fprintf(stderr, "kiln: leaving the build cache %s of an earlier kiln in place: none of its records is in this store (it may be another containerd's; remove it if not)\n", dir)
		return nil
	}
	names := make([]string, 0, len(byNS))
	for ns := range byNS {
		names = append(names, ns)
	}
	sort.Strings(names)
	keep := false
	for _, ns := range names {
		state, err := stateDir(cfg.Root, storeID, ns)
		if err != nil {
			return err
		}
		target := filepath.Join(state, filepath.Base(dir))
		if _, err := os.Lstat(target); err == nil {
			have, err := recordIDs(filepath.Join(target, "metadata_v2.db"))
			if err != nil {
				return err
			}
			if !containsAll(have, byNS[ns]) {
				fmt.Fprintf(stderr, "kiln: leaving the build cache %s of an earlier kiln in place: namespace %s has its own in %s already (remove %s to drop its records)\n", dir, ns, target, dir)
				keep = true
			}
			// Otherwise an interrupted adoption copied them already.
			continue
		}
		// Copied aside and renamed, so that target is complete if it
		// exists.
		tmp := target + ".adopting"
		if err := copyWorkerDir(dir, tmp, byNS[ns]); err != nil {
			return err
		}
		if err := copyIfAbsent(filepath.Join(cfg.Root, "cache.db"), filepath.Join(state, "cache.db")); err != nil {
			return fmt.Errorf("copying the build cache database of an earlier kiln into %s: %w", state, err)
		}
		if err := os.Rename(tmp, target); err != nil {
			return fmt.Errorf("moving the build cache of an earlier kiln into %s: %w", target, err)
		}
		fmt.Fprintf(stderr, "kiln: moved the build cache of namespace %s from %s to %s (kiln keeps one per namespace now)\n", ns, dir, target)
	}
	if keep {
		return nil
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("removing the build cache %s of an earlier kiln, now moved: %w", dir, err)
	}
	return nil
}

// containsAll reports whether every one of want is in have.
func containsAll(have, want []string) bool {
	set := map[string]bool{}
	for _, id := range have {
		set[id] = true
	}
	for _, id := range want {
		if !set[id] {
			return false
		}
	}
	return true
}

// recordIDs lists the cache records in BuildKit's metadata database at
// path; none when there is no database.
func recordIDs(path string) ([]string, error) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	md, err := metadata.NewStore(path)
	if err != nil {
		return nil, fmt.Errorf("opening the build cache metadata %s of an earlier kiln: %w; remove %s to start with an empty cache", path, err, filepath.Dir(path))
	}
	defer md.Close()
	items, err := md.All()
	if err != nil {
		return nil, fmt.Errorf("reading the build cache metadata %s of an earlier kiln: %w; remove %s to start with an empty cache", path, err, filepath.Dir(path))
	}
	ids := make([]string, 0, len(items))
	for _, it := range items {
		ids = append(ids, it.ID())
	}
	return ids, nil
}

// copyWorkerDir copies the files of the worker directory dir (its metadata
// database and worker ID; the rest are working directories) to tmp, made
// anew, and drops every record but keep from the copy.
func copyWorkerDir(dir, tmp string, keep []string) error {
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("removing %s, left by an interrupted kiln: %w", tmp, err)
	}
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return fmt.Errorf("creating the build state directory %s: %w", tmp, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("reading the build cache %s of an earlier kiln: %w", dir, err)
	}
	for _, ent := range entries {
		if ent.Type().IsRegular() {
			if err := copyIfAbsent(filepath.Join(dir, ent.Name()), filepath.Join(tmp, ent.Name())); err != nil {
				return fmt.Errorf("copying the build cache of an earlier kiln into %s: %w", tmp, err)
			}
		}
	}
	mdPath := filepath.Join(tmp, "metadata_v2.db")
	ids, err := recordIDs(mdPath)
	if err != nil || len(ids) == 0 {
		return err
	}
	kept := map[string]bool{}
	for _, id := range keep {
		kept[id] = true
	}
	md, err := metadata.NewStore(mdPath)
	if err != nil {
		return fmt.Errorf("opening the build cache metadata %s: %w", mdPath, err)
	}
	defer md.Close()
	for _, id := range ids {
		if !kept[id] {
			if err := md.Clear(id); err != nil {
				return fmt.Errorf("dropping another namespace's record from the build cache metadata %s: %w", mdPath, err)
			}
		}
	}
	return nil
}

// copyIfAbsent copies the file src to dst unless dst exists or src does
// not. The copy is complete or absent: an interrupted one is redone.
func copyIfAbsent(src, dst string) error {
	if _, err := os.Lstat(dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".copying"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// realPath resolves symlinks in dir, as mount points are listed by their
// real path; dir itself when that fails.
func realPath(dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return dir
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		return r
	}
	return abs
}
