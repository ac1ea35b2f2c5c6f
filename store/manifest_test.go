package store

import (
	"reflect"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/core/images"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
)

func entry(name, platform string) ocispecs.Descriptor {
	os, arch, _ := strings.Cut(platform, "/")
	arch, variant, _ := strings.Cut(arch, "/")
	return ocispecs.Descriptor{MediaType: ocispecs.MediaTypeImageManifest, Digest: dgst(name), Size: 100,
		Platform: &ocispecs.Platform{OS: os, Architecture: arch, Variant: variant}}
}

func attestation(name, forName string) ocispecs.Descriptor {
	return ocispecs.Descriptor{MediaType: ocispecs.MediaTypeImageManifest, Digest: dgst(name), Size: 50,
		Platform:    &ocispecs.Platform{OS: "unknown", Architecture: "unknown"},
		Annotations: map[string]string{annotationReferenceType: referenceTypeAttestation, annotationReferenceDigest: dgst(forName).String()}}
}

func digests(ds []ocispecs.Descriptor) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.Digest.String())
	}
	return out
}

func TestIndexEntriesJoin(t *testing.T) {
	l := IndexEntries{}
	if r := l.Join(IndexEntries{Manifests: []ocispecs.Descriptor{entry("amd", "linux/amd64"), attestation("att-amd", "amd")}}); r != nil {
		t.Fatalf("first join replaced %v", r)
	}
	l.Join(IndexEntries{Manifests: []ocispecs.Descriptor{entry("arm", "linux/arm64")}})
	if got, want := l.Platforms(), []string{"linux/amd64", "linux/arm64"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("platforms = %v, want %v", got, want)
	}
	// A new amd64 replaces the old one and drops its attestation.
	r := l.Join(IndexEntries{Manifests: []ocispecs.Descriptor{entry("amd2", "linux/amd64")}})
	if !reflect.DeepEqual(r, []string{"linux/amd64"}) {
		t.Fatalf("replaced = %v", r)
	}
	if got, want := digests(l.Manifests), digests([]ocispecs.Descriptor{entry("arm", "linux/arm64"), entry("amd2", "linux/amd64")}); !reflect.DeepEqual(got, want) {
		t.Fatalf("entries = %v, want %v", got, want)
	}
	// The same manifest again is kept once and not reported as replaced.
	if r := l.Join(IndexEntries{Manifests: []ocispecs.Descriptor{entry("arm", "linux/arm64")}}); r != nil {
		t.Fatalf("re-adding the same manifest replaced %v", r)
	}
	if len(l.Manifests) != 2 {
		t.Fatalf("entries = %v", digests(l.Manifests))
	}
	// arm/v7 and arm64 are different platforms.
	l.Join(IndexEntries{Manifests: []ocispecs.Descriptor{entry("armv7", "linux/arm/v7")}})
	if got := l.Platforms(); len(got) != 3 {
		t.Fatalf("platforms = %v", got)
	}
}

// The results of remote nodes: each builder's index joined, the platforms
// in the order asked for, attestations after them in the builders' order,
// the first annotations.
func TestIndexEntriesOrder(t *testing.T) {
	var l IndexEntries
	l.Join(EntriesOf(ocispecs.Index{Manifests: []ocispecs.Descriptor{entry("arm", "linux/arm64"), attestation("att-arm", "arm")}, Annotations: map[string]string{"a": "1"}}))
	l.Join(EntriesOf(ocispecs.Index{Manifests: []ocispecs.Descriptor{entry("s390x", "linux/s390x"), entry("amd", "linux/amd64"), attestation("att-amd", "amd")}, Annotations: map[string]string{"a": "2"}}))
	l.Order([]ocispecs.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}})
	want := []ocispecs.Descriptor{entry("amd", "linux/amd64"), entry("arm", "linux/arm64"), entry("s390x", "linux/s390x"), attestation("att-arm", "arm"), attestation("att-amd", "amd")}
	if got := digests(l.Manifests); !reflect.DeepEqual(got, digests(want)) {
		t.Errorf("ordered = %v, want %v", got, digests(want))
	}
	idx := l.Index(ocispecs.MediaTypeImageIndex)
	if idx.MediaType != ocispecs.MediaTypeImageIndex || idx.Annotations["a"] != "1" || len(idx.Manifests) != 5 {
		t.Errorf("index %+v", idx)
	}
}

func TestIndexMediaType(t *testing.T) {
	docker := ocispecs.Descriptor{MediaType: images.MediaTypeDockerSchema2Manifest}
	oci := ocispecs.Descriptor{MediaType: ocispecs.MediaTypeImageManifest}
	if got := indexMediaType([]ocispecs.Descriptor{docker, docker}); got != images.MediaTypeDockerSchema2ManifestList {
		t.Errorf("docker manifests: %s", got)
	}
	if got := indexMediaType([]ocispecs.Descriptor{docker, oci}); got != ocispecs.MediaTypeImageIndex {
		t.Errorf("mixed manifests: %s", got)
	}
}

func TestAnnotateIndex(t *testing.T) {
	idx := ocispecs.Index{Manifests: []ocispecs.Descriptor{entry("amd", "linux/amd64"), entry("arm", "linux/arm64"), attestation("att", "arm")}}
	arm := ocispecs.Platform{OS: "linux", Architecture: "arm64"}
	err := annotateIndex(&idx, AnnotateOptions{Platform: &arm, Variant: "v8", OSFeatures: []string{"f1"}, Annotations: map[string]string{"k": "v"}})
	if err != nil {
		t.Fatal(err)
	}
	got := idx.Manifests[1]
	if got.Platform.Variant != "v8" || !reflect.DeepEqual(got.Platform.OSFeatures, []string{"f1"}) || got.Annotations["k"] != "v" {
		t.Fatalf("entry = %+v %+v", got, got.Platform)
	}
	if idx.Manifests[0].Annotations != nil || idx.Manifests[2].Platform.Variant != "" {
		t.Fatalf("other entries changed: %+v", idx.Manifests)
	}
	// The changed entry is still found by its old platform.
	if err := annotateIndex(&idx, AnnotateOptions{Platform: &arm, Annotations: map[string]string{"k": ""}}); err != nil {
		t.Fatal(err)
	}
	if idx.Manifests[1].Annotations != nil {
		t.Fatalf("empty value did not remove the annotation: %v", idx.Manifests[1].Annotations)
	}
	s390 := ocispecs.Platform{OS: "linux", Architecture: "s390x"}
	err = annotateIndex(&idx, AnnotateOptions{Platform: &s390, Variant: "x"})
	if err == nil || !strings.Contains(err.Error(), "it has no linux/s390x (it has linux/amd64, linux(+f1)/arm64)") {
		t.Fatalf("missing platform: %v", err)
	}
	if err := annotateIndex(&idx, AnnotateOptions{Annotations: map[string]string{"org.example": "x"}}); err != nil || idx.Annotations["org.example"] != "x" {
		t.Fatalf("index annotation: %v %v", err, idx.Annotations)
	}
}
