package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/kiln-build/kiln/store"
)

// containerdArg parses the containerd://[ADDRESS][/NAMESPACE] argument that
// turns push and pull into copies between kiln's store and a containerd.
func containerdArg(c *cli.Context, verb string) (store.ContainerdRef, error) {
	arg := c.Args().Get(1)
	if !store.IsContainerdRef(arg) {
		return store.ContainerdRef{}, usageErrorf("\"kiln %s\" takes one image name, and optionally containerd://[ADDRESS][/NAMESPACE]; %q is neither", verb, arg)
	}
	for _, f := range []string{"platform", "all-platforms", "insecure-registry"} {
		if c.IsSet(f) {
			return store.ContainerdRef{}, usageErrorf("--%s is for registries: \"kiln %s NAME containerd://...\" copies every platform", f, verb)
		}
	}
	return store.ParseContainerdRef(arg, engineConfig(c).Namespace)
}

// copyToContainerd is "kiln push NAME containerd://...": it copies the image
// from kiln's store (usually the embedded one) into a running containerd
// and unpacks the host's platform there.
func copyToContainerd(c *cli.Context) error {
	ref, err := containerdArg(c, "push")
	if err != nil {
		return err
	}
	return withStore(c, func(src *store.Store) error {
		dst, err := store.Open(c.Context, ref.Address, ref.Namespace)
		if err != nil {
			return err
		}
		defer dst.Close()
		return copyImage(c, src, dst)
	})
}

// copyFromContainerd is "kiln pull NAME containerd://...": it copies the
// image from a running containerd into kiln's store and unpacks the host's
// platform there.
func copyFromContainerd(c *cli.Context) error {
	ref, err := containerdArg(c, "pull")
	if err != nil {
		return err
	}
	src, err := store.Open(c.Context, ref.Address, ref.Namespace)
	if err != nil {
		return err
	}
	defer src.Close()
	return withStore(c, func(dst *store.Store) error {
		return copyImage(c, src, dst)
	})
}

func copyImage(c *cli.Context, src, dst *store.Store) error {
	res, err := src.Copy(c.Context, dst, c.Args().First(), store.CopyOptions{
		Snapshotter: engineConfig(c).Snapshotter,
		Progress:    progressWriter(c),
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "%s@%s\n", res.Name, res.Descriptor.Digest)
	return nil
}
