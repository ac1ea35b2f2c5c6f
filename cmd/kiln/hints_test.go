package main

import (
	"errors"
	"fmt"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/kiln-build/kiln/internal/errmsg"
	"github.com/kiln-build/kiln/registry"
	"github.com/kiln-build/kiln/store"
	"github.com/kiln-build/kiln/usage"
)

// The messages users saw before the hints moved out of store, word for word.
func TestWithHints(t *testing.T) {
	notFound := &store.NotFoundError{Name: "nosuch:1", Namespace: "default"}
	inUse := &store.InUseError{Name: "docker.io/library/inuse:1", Containers: []string{"user-of-inuse"}}
	layer := store.Blob{Kind: "layer", Digest: dgst("l")}
	incomplete := &store.IncompleteError{Name: "docker.io/library/app:1", Action: "push",
		Missing: []store.MissingContent{{Platform: "linux/amd64", Blobs: []store.Blob{layer}}}, Complete: []string{"linux/arm64"}}
	indexOnly := &store.IncompleteError{Name: "docker.io/library/app:1", Action: "save",
		Missing: []store.MissingContent{{Platform: "index", Blobs: []store.Blob{layer}}}}
	short := dgst("l").Encoded()[:12]
	cases := []struct {
		err  error
		want string
	}{
		{notFound, `image "nosuch:1" not found in namespace default: list images with "kiln images"`},
		{fmt.Errorf("tagging: %w", notFound), `tagging: image "nosuch:1" not found in namespace default: list images with "kiln images"`},
		{errmsg.Join(inUse, notFound), `image docker.io/library/inuse:1 is in use: container user-of-inuse uses it; remove the container first (ctr containers rm user-of-inuse) or remove the image anyway with --force; image "nosuch:1" not found in namespace default: list images with "kiln images"`},
		{incomplete, `image docker.io/library/app:1 is missing content for linux/amd64 (layer sha256:` + short + ` not present); pull it with "kiln pull --platform linux/amd64 app:1" or push with --platform linux/arm64`},
		{fmt.Errorf("cannot add app:1 to list: %w; a manifest list must hold all of its content to be pushed", indexOnly),
			`cannot add app:1 to list: image docker.io/library/app:1 is missing content for index (layer sha256:` + short + ` not present); pull it again with "kiln pull --all-platforms app:1"; a manifest list must hold all of its content to be pushed`},
		{&store.MissingManifestError{Name: "docker.io/library/app:1", Platform: "linux/arm64", Digest: dgst("m")},
			`the linux/arm64 manifest of image docker.io/library/app:1 (` + dgst("m").String() + `) is not in the content store: fetch it with "kiln pull --platform linux/arm64 app:1"`},
		{&store.AbsentPlatformsError{Name: "docker.io/library/app:1", Registry: "docker.io", Absent: []string{"linux/s390x"}, Have: []string{"linux/amd64", "linux/arm64"}},
			`image docker.io/library/app:1 in registry docker.io has no linux/s390x (it has linux/amd64, linux/arm64): pick one of those with --platform, or use --all-platforms`},
		{fmt.Errorf("cannot push r.example.com/a:1: %w", &registry.AuthError{Host: "r.example.com", Op: "push", Name: "r.example.com/a:1", Err: errors.New("401 Unauthorized")}),
			`cannot push r.example.com/a:1: registry r.example.com refused to let kiln push r.example.com/a:1 (401 Unauthorized): log in with "kiln login r.example.com" (kiln, docker and nerdctl share the login) or check that the repository exists and you may push it`},
		{errors.New("plain"), "plain"},
	}
	for _, c := range cases {
		got := withHints(c.err)
		if got.Error() != c.want {
			t.Errorf("withHints(%q)\n got %s\nwant %s", c.err, got, c.want)
		}
		if !errors.Is(got, c.err) {
			t.Errorf("withHints(%q) does not unwrap to the error", c.err)
		}
	}
	// Hints keep what the exit code depends on.
	if err := withHints(usage.Wrap(notFound)); !usage.Is(err) || !errdefs.IsNotFound(err) {
		t.Errorf("withHints lost the usage mark or the cause: %v", err)
	}
}
