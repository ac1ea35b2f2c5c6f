package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/kiln-build/kiln/internal/errmsg"
	"github.com/kiln-build/kiln/usage"
)

func dgst(s string) digest.Digest { return digest.FromString(s) }

func TestIsAttestation(t *testing.T) {
	cases := []struct {
		desc ocispecs.Descriptor
		want bool
	}{
		{ocispecs.Descriptor{Platform: &ocispecs.Platform{OS: "linux", Architecture: "amd64"}}, false},
		{ocispecs.Descriptor{Platform: &ocispecs.Platform{OS: "unknown", Architecture: "unknown"}}, true},
		{ocispecs.Descriptor{Annotations: map[string]string{"vnd.docker.reference.type": "attestation-manifest"}}, true},
		{ocispecs.Descriptor{Platform: &ocispecs.Platform{OS: "linux", Architecture: "arm64"}, Annotations: map[string]string{"vnd.docker.reference.type": "attestation-manifest"}}, true},
		{ocispecs.Descriptor{Annotations: map[string]string{"vnd.docker.reference.type": "something-else"}}, false},
		{ocispecs.Descriptor{}, false},
	}
	for i, c := range cases {
		if got := IsAttestation(c.desc); got != c.want {
			t.Errorf("case %d: IsAttestation(%+v) = %v, want %v", i, c.desc, got, c.want)
		}
	}
}

func TestBlobKind(t *testing.T) {
	for mt, want := range map[string]string{
		ocispecs.MediaTypeImageIndex:                                "index",
		"application/vnd.docker.distribution.manifest.list.v2+json": "index",
		ocispecs.MediaTypeImageManifest:                             "manifest",
		"application/vnd.docker.distribution.manifest.v2+json":      "manifest",
		ocispecs.MediaTypeImageConfig:                               "config",
		"application/vnd.docker.container.image.v1+json":            "config",
		ocispecs.MediaTypeImageLayerGzip:                            "layer",
		"application/vnd.oci.image.layer.v1.tar+zstd":               "layer",
		"application/vnd.docker.image.rootfs.diff.tar.gzip":         "layer",
		"application/vnd.in-toto+json":                              "layer",
		"application/octet-stream":                                  "blob",
	} {
		if got := blobKind(mt); got != want {
			t.Errorf("blobKind(%q) = %q, want %q", mt, got, want)
		}
	}
}

func TestIncompleteError(t *testing.T) {
	sum := ImageSummary{Name: "docker.io/library/app:1", Platforms: []PlatformSummary{
		{Platform: "linux/amd64", Digest: dgst("amd64"), Content: ContentComplete},
		{Platform: "linux/arm64", Digest: dgst("arm64"), Content: ContentPartial, Missing: []Blob{{Kind: "layer", Digest: dgst("l"), Size: 10}}},
	}}
	err := sum.incomplete("push", nil)
	var ie *IncompleteError
	if !errors.As(err, &ie) {
		t.Fatalf("incomplete = %v, want an *IncompleteError", err)
	}
	want := fmt.Sprintf(`image docker.io/library/app:1 is missing content for linux/arm64 (layer sha256:%s not present)`, dgst("l").Encoded()[:12])
	if err.Error() != want {
		t.Errorf("message\n%s\nwant\n%s", err, want)
	}
	if got := ie.Refetch(); len(got) != 1 || got[0] != "linux/arm64" || len(ie.Complete) != 1 || ie.Complete[0] != "linux/amd64" {
		t.Errorf("Refetch = %v, Complete = %v", got, ie.Complete)
	}
	// Only the complete platform chosen: nothing is missing.
	if err := sum.incomplete("push", sum.Platforms[:1]); err != nil {
		t.Errorf("incomplete(amd64) = %v", err)
	}
	// An attestation of a chosen platform that lacks content counts.
	sum.Attestations = []AttestationSummary{{Digest: dgst("att"), For: dgst("amd64"), Content: ContentPartial, Missing: []Blob{{Kind: "layer", Digest: dgst("x")}}}}
	err = sum.incomplete("save", sum.Platforms[:1])
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "attestation for linux/amd64") || strings.Join(ie.Refetch(), ",") != "linux/amd64" {
		t.Errorf("attestation: %v", err)
	}
	// Many missing blobs are summarised.
	blobs := []Blob{{Kind: "manifest", Digest: dgst("1")}, {Kind: "layer", Digest: dgst("2")}, {Kind: "layer", Digest: dgst("3")}, {Kind: "layer", Digest: dgst("4")}, {Kind: "layer", Digest: dgst("5")}}
	if got := describeBlobs(blobs); !strings.HasSuffix(got, "and 2 more not present") || !strings.HasPrefix(got, "manifest sha256:") {
		t.Errorf("describeBlobs = %q", got)
	}
}

func TestPickAndHostPlatform(t *testing.T) {
	sum := ImageSummary{Name: "n", Platforms: []PlatformSummary{
		{Platform: "linux/amd64", spec: platforms.MustParse("linux/amd64")},
		{Platform: "linux/arm64", spec: platforms.Normalize(platforms.MustParse("linux/arm64/v8"))},
		{Platform: "linux/arm/v7", spec: platforms.MustParse("linux/arm/v7")},
	}}
	got, err := sum.pick([]ocispecs.Platform{platforms.MustParse("linux/arm64"), platforms.MustParse("linux/amd64")})
	if err != nil || len(got) != 2 || got[0].Platform != "linux/arm64" || got[1].Platform != "linux/amd64" {
		t.Errorf("pick = %+v, %v", got, err)
	}
	_, err = sum.pick([]ocispecs.Platform{platforms.MustParse("linux/s390x")})
	if err == nil || err.Error() != "image n has no linux/s390x (it has linux/amd64, linux/arm64, linux/arm/v7)" {
		t.Errorf("pick(s390x) = %v", err)
	}
	host, ok := sum.hostPlatform()
	if want := platforms.Format(platforms.DefaultSpec()); (want == "linux/amd64" || want == "linux/arm64") && (!ok || host.Platform != want) {
		t.Errorf("hostPlatform = %+v, %v; want %s", host, ok, want)
	}
}

func TestNameMatcher(t *testing.T) {
	match, err := nameMatcher([]string{"app", "registry.example.com:5000/team/web:2"})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{
		"docker.io/library/app:latest":                            true,
		"docker.io/library/app:1":                                 true,
		"docker.io/library/apple:1":                               false,
		"docker.io/me/app:1":                                      false,
		"registry.example.com:5000/team/web:2":                    true,
		"registry.example.com:5000/team/web:3":                    false,
		"docker.io/library/app@sha256:" + strings.Repeat("a", 64): true,
	} {
		if got := match(name); got != want {
			t.Errorf("match(%q) = %v, want %v", name, got, want)
		}
	}
	if _, err := nameMatcher([]string{"UPPER"}); !usage.Is(err) {
		t.Errorf("nameMatcher(UPPER) = %v, want a usage error", err)
	}
}

func TestFilterIndex(t *testing.T) {
	raw := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","annotations":{"a":"b"},"manifests":[` +
		`{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + dgst("amd64").String() + `","size":1,"platform":{"architecture":"amd64","os":"linux"}},` +
		`{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + dgst("arm64").String() + `","size":1,"platform":{"architecture":"arm64","os":"linux"}},` +
		`{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + dgst("att").String() + `","size":1,"platform":{"architecture":"unknown","os":"unknown"},"annotations":{"vnd.docker.reference.digest":"` + dgst("arm64").String() + `","vnd.docker.reference.type":"attestation-manifest"}}]}`)
	out, changed, err := filterIndex(raw, map[digest.Digest]bool{dgst("arm64"): true, dgst("att"): true})
	if err != nil || !changed {
		t.Fatalf("filterIndex: %v, changed %v", err, changed)
	}
	var idx ocispecs.Index
	if err := json.Unmarshal(out, &idx); err != nil {
		t.Fatal(err)
	}
	if len(idx.Manifests) != 2 || idx.Manifests[0].Digest != dgst("arm64") || idx.Manifests[1].Annotations["vnd.docker.reference.type"] != "attestation-manifest" {
		t.Errorf("manifests %+v", idx.Manifests)
	}
	if idx.SchemaVersion != 2 || idx.MediaType != ocispecs.MediaTypeImageIndex || idx.Annotations["a"] != "b" {
		t.Errorf("index fields lost: %s", out)
	}
	same, changed, err := filterIndex(raw, map[digest.Digest]bool{dgst("amd64"): true, dgst("arm64"): true, dgst("att"): true})
	if err != nil || changed || !bytes.Equal(same, raw) {
		t.Errorf("keeping everything changed the index: %v %v", changed, err)
	}
}

func TestArchiveRefName(t *testing.T) {
	for in, want := range map[string]string{
		"app:1":                      "docker.io/library/app:1",
		"docker.io/library/app:1":    "docker.io/library/app:1",
		"localhost:5000/a/b:2":       "localhost:5000/a/b:2",
		"1.0":                        "",
		"latest":                     "",
		"NOT VALID":                  "",
		"registry.example.com/a/b":   "",
		"docker.io/library/app:v1.2": "docker.io/library/app:v1.2",
	} {
		if got := archiveRefName(in); got != want {
			t.Errorf("archiveRefName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestHostFirst(t *testing.T) {
	host := platforms.DefaultSpec()
	other := platforms.MustParse("linux/s390x")
	if host.Architecture == "s390x" {
		other = platforms.MustParse("linux/riscv64")
	}
	var c hostFirst
	if !c.Less(host, other) || c.Less(other, host) {
		t.Errorf("hostFirst does not put %v before %v", host, other)
	}
	if c.Match(ocispecs.Platform{OS: "unknown", Architecture: "unknown"}) || !c.Match(other) {
		t.Errorf("hostFirst matches attestations or misses platforms")
	}
}

// The libraries' messages name no kiln command or flag: cmd/kiln adds
// those hints (see its hints.go).
func TestNotFoundAndInUseMessages(t *testing.T) {
	err := error(&NotFoundError{Name: "x", Namespace: "default"})
	if err.Error() != `image "x" not found in namespace default` || !errdefs.IsNotFound(err) {
		t.Errorf("NotFoundError: %v", err)
	}
	iu := &InUseError{Name: "docker.io/library/app:1", Containers: []string{"web", "db"}}
	if iu.Error() != "image docker.io/library/app:1 is in use: containers web, db use it" {
		t.Errorf("InUseError: %v", iu)
	}
	j := errmsg.Join(errors.New("a"), err)
	if j.Error() != `a; image "x" not found in namespace default` || !errdefs.IsNotFound(j) {
		t.Errorf("errmsg.Join: %v", j)
	}
}

func TestDigestPrefix(t *testing.T) {
	full := dgst("x").String()
	for arg, want := range map[string]bool{
		full:                                     true,
		full[:len("sha256:")+12]:                 true,
		strings.TrimPrefix(full, "sha256:")[:12]: true,
		full[:len("sha256:")+11]:                 false,
		"sha256:XYZ":                             false,
		"app:1":                                  false,
		strings.TrimPrefix(full, "sha256:") + "0": false,
	} {
		if got := digestPrefix.MatchString(arg); got != want {
			t.Errorf("digestPrefix.MatchString(%q) = %v, want %v", arg, got, want)
		}
	}
}
