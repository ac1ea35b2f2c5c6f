package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	ctd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"

	"github.com/kiln-build/kiln/store"
)

// rootID identifies a kiln state directory: a short hash of its absolute
// path.
func rootID(root string) string {
	abs, err := filepath.Abs(root)
	if err != nil {
		abs = root
	}
	sum := sha256.Sum256([]byte(abs))
	return hex.EncodeToString(sum[:6])
}

// cgroupParent places the build steps of one kiln state directory under a
// cgroup of their own (not in rootless mode, where steps get no cgroup
// path). Step containers are recognised by the label containerLabelKey;
// kiln versions before it recognised them by this path alone, and the
// sweep still does.
func cgroupParent(root string) string {
	return "kiln/" + rootID(root)
}

// sweepContainers removes the step containers and tasks that a kiln process
// on the same root left when it was killed: those labelled with the root's
// rootID (see labelContainers), or created under its cgroup parent by
// earlier kiln versions. The caller holds the root's lock, so no live kiln
// process owns them.
func sweepContainers(ctx context.Context, c *ctd.Client, root string, stderr io.Writer) error {
	id := rootID(root)
	prefix := "/" + cgroupParent(root) + "/"
	containers, err := c.Containers(ctx)
	if err != nil {
		return fmt.Errorf("listing containers left by an earlier build: %w", err)
	}
	n := 0
	for _, ctr := range containers {
		if !leftBy(ctx, ctr, id, prefix) {
			continue
		}
		if err := removeContainer(ctx, ctr); err != nil {
			return fmt.Errorf("removing container %s left by an interrupted build: %w", ctr.ID(), err)
		}
		n++
	}
	if n > 0 {
		fmt.Fprintf(stderr, "removed %d build step container(s) left by an interrupted kiln\n", n)
	}
	return nil
}

// leftBy reports whether ctr is a step container of the state directory
// with the given rootID and cgroup prefix.
func leftBy(ctx context.Context, ctr ctd.Container, id, prefix string) bool {
	info, err := ctr.Info(ctx, ctd.WithoutRefreshedMetadata)
	if err != nil {
		return false
	}
	if info.Labels[containerLabelKey] == id {
		return true
	}
	spec, err := ctr.Spec(ctx)
	return err == nil && spec.Linux != nil && strings.HasPrefix(spec.Linux.CgroupsPath, prefix)
}

func removeContainer(ctx context.Context, ctr ctd.Container) error {
	if task, err := ctr.Task(ctx, nil); err == nil {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if st, err := task.Wait(ctx); err == nil {
			err := task.Kill(ctx, syscall.SIGKILL, ctd.WithKillAll)
			if err != nil && !errdefs.IsNotFound(err) {
				// Without a cgroup (rootless mode) runc cannot list the
				// container's processes; a step runs in a PID namespace
				// of its own, so killing its first process ends them all.
				err = task.Kill(ctx, syscall.SIGKILL)
			}
			if err == nil || errdefs.IsNotFound(err) {
				select {
				case <-st:
				case <-ctx.Done():
				}
			}
		}
		if _, err := task.Delete(ctx); err != nil && !errdefs.IsNotFound(err) {
			return err
		}
	}
	if err := ctr.Delete(ctx); err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	return nil
}

// tidyRoot does what a process holding the root's lock does before it
// starts BuildKit: it removes the steps a killed kiln ran with runc in the
// worker directories (with the given prefix) of every namespace of the
// stores matching storeGlob, since any of them may have been left, and then
// moves an earlier kiln's shared state into the namespaces it belongs to,
// which must not happen while steps still use it.
func tidyRoot(ctx context.Context, st *store.Store, cfg Config, storeGlob, prefix string, stderr io.Writer) error {
	dirs, err := workerDirs(cfg.Root, storeGlob, prefix)
	if err != nil {
		return err
	}
	for _, dir := range dirs {
		if err := sweepRuncSteps(ctx, dir, stderr); err != nil {
			return err
		}
	}
	return adoptLegacyState(ctx, st, cfg, prefix, stderr)
}

// releaseTemporaryLeases deletes the leases BuildKit made for the work of
// this process. Some outlive a build by design (they expire after minutes),
// but no kiln process is left to use them; holding the namespace lock, kiln
// knows they are its own.
func releaseTemporaryLeases(st *store.Store) {
	ctx, cancel := context.WithTimeout(st.WithNamespace(context.Background()), 10*time.Second)
	defer cancel()
	ls := st.Client().LeasesService()
	list, err := ls.List(ctx, `labels."buildkit/lease.temporary"`)
	if err != nil {
		return
	}
	// One round trip each: send them side by side.
	var wg sync.WaitGroup
	for _, l := range list {
		wg.Go(func() { ls.Delete(ctx, l) })
	}
	wg.Wait()
}
