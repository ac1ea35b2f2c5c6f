package builder

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	ctd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"

	"github.com/kiln-build/kiln/store"
)

// cgroupParent places the build steps of one kiln state directory under a
// cgroup of their own. BuildKit's containers carry no labels, so this path,
// recorded in each container's spec, is how kiln recognises the containers
// a killed kiln process left behind, and only those of its own root.
func cgroupParent(root string) string {
	abs, err := filepath.Abs(root)
	if err != nil {
		abs = root
	}
	sum := sha256.Sum256([]byte(abs))
	return "kiln/" + hex.EncodeToString(sum[:6])
}

// sweepContainers removes the step containers and tasks that a kiln process
// on the same root left when it was killed. The caller holds the root's lock,
// so no live kiln process owns them.
func sweepContainers(ctx context.Context, c *ctd.Client, root string, stderr io.Writer) error {
	prefix := "/" + cgroupParent(root) + "/"
	containers, err := c.Containers(ctx)
	if err != nil {
		return fmt.Errorf("listing containers left by an earlier build: %w", err)
	}
	n := 0
	for _, ctr := range containers {
		spec, err := ctr.Spec(ctx)
		if err != nil || spec.Linux == nil || !strings.HasPrefix(spec.Linux.CgroupsPath, prefix) {
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

func removeContainer(ctx context.Context, ctr ctd.Container) error {
	if task, err := ctr.Task(ctx, nil); err == nil {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if st, err := task.Wait(ctx); err == nil {
			if err := task.Kill(ctx, syscall.SIGKILL, ctd.WithKillAll); err == nil || errdefs.IsNotFound(err) {
				select {
				case <-st:
				case <-ctx.Done():
				}
			}
		}
		if _, err := task.Delete(ctx, ctd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			return err
		}
	}
	if err := ctr.Delete(ctx); err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	return nil
}

// instance is everything one kiln operation holds: the containerd store, the
// state lock and the embedded BuildKit.
type instance struct {
	store  *store.Store
	engine *engine
	unlock func()
}

// start connects to containerd, takes the root's lock, cleans what a killed
// kiln process left, and starts the embedded BuildKit.
func start(ctx context.Context, cfg Config, stderr io.Writer) (*instance, error) {
	st, err := store.Open(ctx, cfg.Address, cfg.Namespace)
	if err != nil {
		return nil, err
	}
	in := &instance{store: st}
	unlock, err := lockState(ctx, cfg, stderr)
	if err != nil {
		in.Close()
		return nil, err
	}
	in.unlock = unlock
	if err := sweepContainers(st.WithNamespace(ctx), st.Client(), cfg.Root, stderr); err != nil {
		in.Close()
		return nil, err
	}
	cfg.cgroupParent = cgroupParent(cfg.Root)
	if in.engine, err = newEngine(ctx, cfg); err != nil {
		in.Close()
		return nil, err
	}
	return in, nil
}

// Close stops BuildKit, drops the temporary leases it kept, then releases
// the locks and the connection.
func (in *instance) Close() {
	if in.engine != nil {
		in.engine.Close()
		releaseTemporaryLeases(in.store)
	}
	if in.unlock != nil {
		in.unlock()
	}
	in.store.Close()
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
	for _, l := range list {
		ls.Delete(ctx, l)
	}
}
