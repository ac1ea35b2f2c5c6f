//go:build linux

package integration

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
)

// unameDockerfile records the machine a RUN step saw and prints it when run.
const unameDockerfile = `FROM busybox
ARG TAG=one
RUN uname -m > /built-on && echo $TAG > /tag
CMD ["uname", "-m"]
`

// TestManifest joins two separately built single-platform images into one index whose
// platforms both run, amends, annotates, inspects, pushes and removes it.
func TestManifest(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.busyboxBase(t, "busybox")
	dir := contextDir(t, map[string]string{"Dockerfile": unameDockerfile})
	e.kiln("build", "--platform", "linux/amd64", "-t", "app:amd64", dir).ok(t)
	e.kiln("build", "--platform", "linux/arm64", "-t", "app:arm64", dir).ok(t)
	reg := startRegistry(t)
	list := reg + "/team/app:1"

	out := e.kiln("manifest", "create", list, "app:amd64", "app:arm64").ok(t)
	if !strings.HasPrefix(out.Stdout, list+"@sha256:") || !strings.Contains(out.Stderr, "linux/amd64, linux/arm64") {
		t.Fatalf("manifest create printed:\n%s\n%s", out.Stdout, out.Stderr)
	}
	img := e.image(t, list)
	if img.MediaType != ocispecs.MediaTypeImageIndex || len(img.Index.Manifests) != 2 {
		t.Fatalf("manifest list: %s with %d entries", img.MediaType, len(img.Index.Manifests))
	}
	amd := e.image(t, "docker.io/library/app:amd64")
	if m := manifestFor(t, img.Index, "linux/amd64"); m.Digest.String() != amd.Digest {
		t.Fatalf("linux/amd64 entry %s, want the image app:amd64 %s", m.Digest, amd.Digest)
	}
	for platform, machine := range map[string]string{"linux/amd64": "x86_64", "linux/arm64": "aarch64"} {
		got := e.ctr("run", "--rm", "--platform", platform, list, "manifest-"+strings.ReplaceAll(platform, "/", "-")).ok(t).Stdout
		if strings.TrimSpace(got) != machine {
			t.Errorf("%s of the manifest list printed %q, want %s", platform, got, machine)
		}
	}

	// Usage errors exit 2; an existing name needs --amend.
	e.kiln("manifest", "create", list).fails(t, 2, "needs a name and at least one image")
	e.kiln("manifest", "create", list, "app:amd64").fails(t, 1, "already exists: add to it with \"kiln manifest create --amend\"")
	e.kiln("tag", "app:amd64", "app:amd64-copy").ok(t)
	e.kiln("build", "--platform", "linux/amd64", "--build-arg", "TAG=other", "-t", "app:amd64-other", dir).ok(t)
	e.kiln("manifest", "create", "twice", "app:amd64", "app:amd64-other").fails(t, 2, "both app:amd64 and app:amd64-other provide linux/amd64: give one image per platform")
	e.kiln("manifest", "create", "nothing", "app:missing").fails(t, 1, `image "app:missing" not found`)
	e.kiln("manifest", "create", "bad name", "app:amd64").fails(t, 2, "invalid image name")

	// --amend replaces the entry of the same platform.
	e.kiln("build", "--platform", "linux/arm64", "--build-arg", "TAG=two", "-t", "app:arm64-two", dir).ok(t)
	out = e.kiln("manifest", "create", "--amend", list, "app:arm64-two").ok(t)
	if !strings.Contains(out.Stderr, "replaced linux/arm64 of "+list) {
		t.Fatalf("amend did not report the replaced platform:\n%s", out.Stderr)
	}
	img = e.image(t, list)
	arm2 := e.image(t, "docker.io/library/app:arm64-two")
	if len(img.Index.Manifests) != 2 || manifestFor(t, img.Index, "linux/arm64").Digest.String() != arm2.Digest {
		t.Fatalf("amended index: %+v", img.Index.Manifests)
	}
	got := e.ctr("run", "--rm", "--platform", "linux/arm64", list, "manifest-amended", "cat", "/tag").ok(t).Stdout
	if strings.TrimSpace(got) != "two" {
		t.Fatalf("amended arm64 entry runs the old image: /tag is %q", got)
	}

	// annotate changes one entry, or the index.
	e.kiln("manifest", "annotate", list, "--platform", "linux/arm64", "--variant", "v8", "--annotation", "org.example.board=pi").ok(t)
	e.kiln("manifest", "annotate", list, "--annotation", "org.example.team=kiln").ok(t)
	var idx ocispecs.Index
	mustJSON(t, e.kiln("manifest", "inspect", list).ok(t).Stdout, &idx)
	arm := manifestFor(t, idx, "linux/arm64")
	if arm.Platform.Variant != "v8" || arm.Annotations["org.example.board"] != "pi" || idx.Annotations["org.example.team"] != "kiln" {
		t.Fatalf("annotated index: %+v, entry %+v %+v", idx.Annotations, arm.Annotations, arm.Platform)
	}
	e.kiln("manifest", "annotate", list, "--platform", "linux/s390x", "--variant", "x").fails(t, 1, "has no linux/s390x (it has linux/amd64, linux/arm64)")
	e.kiln("manifest", "annotate", list, "--os", "linux").fails(t, 2, "name it with --platform")
	e.kiln("manifest", "annotate", list, "--annotation", "novalue").fails(t, 2, "invalid --annotation")
	e.kiln("manifest", "annotate", "app:amd64", "--annotation", "a=b").fails(t, 1, "is a single manifest, not a manifest list")
	e.kiln("manifest", "annotate", list, "--bogus").fails(t, 2, "flag provided but not defined")

	// The result is pushable: the registry serves the index with both platforms.
	e.kiln("push", list).ok(t)
	req, _ := http.NewRequest("GET", "http://"+reg+"/v2/team/app/manifests/1", nil)
	req.Header.Set("Accept", ocispecs.MediaTypeImageIndex)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var pushed ocispecs.Index
	if err := json.NewDecoder(resp.Body).Decode(&pushed); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if len(pushed.Manifests) != 2 {
		t.Fatalf("registry index has %d entries", len(pushed.Manifests))
	}
	// A fresh namespace pulls it back and runs both platforms.
	f := newEnv(t)
	f.kiln("pull", "--all-platforms", list).ok(t)
	for platform, machine := range map[string]string{"linux/amd64": "x86_64", "linux/arm64": "aarch64"} {
		got := f.ctr("run", "--rm", "--platform", platform, list, "pulled-"+strings.ReplaceAll(platform, "/", "-")).ok(t).Stdout
		if strings.TrimSpace(got) != machine {
			t.Errorf("pulled %s printed %q, want %s", platform, got, machine)
		}
	}

	// rm removes only manifest lists; their images stay.
	e.kiln("manifest", "rm", "app:amd64").fails(t, 1, "is a single manifest, not a manifest list: remove it with \"kiln rm app:amd64\"")
	e.kiln("manifest", "rm", list).ok(t)
	e.kiln("manifest", "inspect", list).fails(t, 1, "not found")
	e.image(t, "docker.io/library/app:arm64-two")
	e.kiln("manifest", "rm").fails(t, 2, "needs the names")
}
