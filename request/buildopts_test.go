package request

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	bkclient "github.com/moby/buildkit/client"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/crypto/ssh"

	"github.com/kiln-build/kiln/usage"
)

// wantUsage checks that err is a usage error containing want.
func wantUsage(t *testing.T, what string, err error, want string) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("%s: error %v, want one containing %q", what, err, want)
		return
	}
	if !usage.Is(err) {
		t.Errorf("%s: %v is not a usage error", what, err)
	}
}

func TestParseSecret(t *testing.T) {
	cases := []struct {
		in   string
		want Secret
		err  string
	}{
		{"id=token,src=/run/token", Secret{ID: "token", File: "/run/token"}, ""},
		{"id=token,source=/run/token", Secret{ID: "token", File: "/run/token"}, ""},
		{"id=key,env=API_KEY", Secret{ID: "key", Env: "API_KEY"}, ""},
		{"type=env,id=key,src=API_KEY", Secret{ID: "key", Env: "API_KEY"}, ""},
		{"type=env,id=API_KEY", Secret{ID: "API_KEY", Env: "API_KEY"}, ""},
		{"type=file,id=token", Secret{ID: "token", File: "token"}, ""},
		{"id=token", Secret{ID: "token"}, ""},
		{"token", Secret{ID: "token"}, ""},
		{`"id=a,b",src=f`, Secret{ID: "a,b", File: "f"}, ""},
		{"ID=x,SRC=f", Secret{ID: "x", File: "f"}, ""},
		{"", Secret{}, "empty --secret"},
		{"src=/run/token", Secret{}, "missing id="},
		{"id=x,file=/f", Secret{}, `unknown key "file"`},
		{"id=x,type=vault", Secret{}, "type must be file or env"},
		{"id=x,src=f,env=E", Secret{}, "not both"},
		{"id=x,nonsense", Secret{}, `"nonsense" is not KEY=VALUE`},
		{"id=x\nsrc=f", Secret{}, "line breaks"},
	}
	for _, c := range cases {
		got, err := ParseSecret(c.in)
		if c.err != "" {
			wantUsage(t, c.in, err, c.err)
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ParseSecret(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
}

func TestSecretSource(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	os.WriteFile(file, []byte("value"), 0o600)
	t.Setenv("KILN_TEST_SECRET", "v")
	if src, err := (Secret{ID: "t", File: file}).source(); err != nil || src.FilePath != file {
		t.Errorf("file secret: %+v %v", src, err)
	}
	if src, err := (Secret{ID: "KILN_TEST_SECRET"}).source(); err != nil || src.Env != "KILN_TEST_SECRET" {
		t.Errorf("a bare ID set in the environment is that variable: %+v %v", src, err)
	}
	_, err := (Secret{ID: "t", File: filepath.Join(dir, "missing")}).source()
	wantUsage(t, "missing file", err, "does not exist")
	_, err = (Secret{ID: "t", File: dir}).source()
	wantUsage(t, "directory", err, "is a directory")
	_, err = (Secret{ID: "t", Env: "KILN_TEST_UNSET_SECRET"}).source()
	wantUsage(t, "unset variable", err, "environment variable KILN_TEST_UNSET_SECRET is not set")
}

func TestParseSSH(t *testing.T) {
	cases := []struct {
		in    string
		id    string
		paths []string
		err   string
	}{
		{"default", "default", nil, ""},
		{"default=/run/agent.sock", "default", []string{"/run/agent.sock"}, ""},
		{"deploy=/k/a,/k/b", "deploy", []string{"/k/a", "/k/b"}, ""},
		{"", "", nil, "missing ID"},
		{"=/k/a", "", nil, "missing ID"},
		{"a b=/k", "", nil, "may not contain"},
		{"deploy=/k/a,", "", nil, "empty path"},
	}
	for _, c := range cases {
		got, err := ParseSSH(c.in)
		if c.err != "" {
			wantUsage(t, c.in, err, c.err)
			continue
		}
		if err != nil || got.ID != c.id || !reflect.DeepEqual(got.Paths, c.paths) {
			t.Errorf("ParseSSH(%q) = %+v, %v", c.in, got, err)
		}
	}
}

func TestParseBuildArg(t *testing.T) {
	env := map[string]string{"FROM_ENV": "e"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	cases := []struct {
		in, key, value string
		ok             bool
		err            bool
	}{
		{"A=1", "A", "1", true, false},
		{"A=1,2=3", "A", "1,2=3", true, false},
		{"A=", "A", "", true, false},
		{"FROM_ENV", "FROM_ENV", "e", true, false},
		{"UNSET", "UNSET", "", false, false},
		{"=x", "", "", false, true},
		{"", "", "", false, true},
		{" A=1", "", "", false, true},
		{"A\n=1", "", "", false, true},
	}
	for _, c := range cases {
		k, v, ok, err := ParseBuildArg(c.in, lookup)
		if c.err {
			wantUsage(t, c.in, err, "invalid --build-arg")
			continue
		}
		if err != nil || k != c.key || v != c.value || ok != c.ok {
			t.Errorf("ParseBuildArg(%q) = %q %q %v %v", c.in, k, v, ok, err)
		}
	}
}

func TestParseBuildContext(t *testing.T) {
	cases := []struct {
		in   string
		want BuildContext
		err  string
	}{
		{"extra=./dir", BuildContext{Name: "extra", Kind: ContextDir, Path: "./dir"}, ""},
		{"base=docker-image://alpine:3", BuildContext{Name: "base", Kind: ContextImage, Ref: "alpine:3"}, ""},
		{"docker.io/library/alpine:3=docker-image://busybox", BuildContext{Name: "docker.io/library/alpine:3", Kind: ContextImage, Ref: "busybox"}, ""},
		{"l=oci-layout:///srv/layout", BuildContext{Name: "l", Kind: ContextOCILayout, Path: "/srv/layout", Tag: "latest"}, ""},
		{"l=oci-layout://./my:dir/layout:v1", BuildContext{Name: "l", Kind: ContextOCILayout, Path: "./my:dir/layout", Tag: "v1"}, ""},
		{"l=oci-layout://layout@sha256:" + strings.Repeat("a", 64), BuildContext{Name: "l", Kind: ContextOCILayout, Path: "layout", Tag: "latest", Digest: digest.Digest("sha256:" + strings.Repeat("a", 64))}, ""},
		{"extra", BuildContext{}, "use NAME=DIR"},
		{"=dir", BuildContext{}, "use NAME=DIR"},
		{"extra=", BuildContext{}, "use NAME=DIR"},
		{"b=docker-image://Bad:Ref:x", BuildContext{}, "invalid --build-context b"},
		{"l=oci-layout://layout@sha256:zz", BuildContext{}, "digest"},
		{"l=oci-layout://layout:", BuildContext{}, "empty tag"},
		{"l=oci-layout://", BuildContext{}, "needs the layout's directory"},
		{"g=https://github.com/x/y.git", BuildContext{}, "unsupported --build-context"},
		{"g=git@github.com:x/y.git", BuildContext{}, "unsupported --build-context"},
	}
	for _, c := range cases {
		got, err := ParseBuildContext(c.in)
		if c.err != "" {
			wantUsage(t, c.in, err, c.err)
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ParseBuildContext(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
}

func TestLayoutDigest(t *testing.T) {
	d1, d2 := "sha256:"+strings.Repeat("1", 64), "sha256:"+strings.Repeat("2", 64)
	idx := ocispecs.Index{Manifests: []ocispecs.Descriptor{
		{Digest: digest.Digest(d1), Annotations: map[string]string{ocispecs.AnnotationRefName: "v1"}},
		{Digest: digest.Digest(d2), Annotations: map[string]string{"io.containerd.image.name": "docker.io/library/app:v2"}},
	}}
	for tag, want := range map[string]string{"v1": d1, "v2": d2} {
		if got, err := layoutDigest(idx, tag); err != nil || got.String() != want {
			t.Errorf("tag %s: %s %v", tag, got, err)
		}
	}
	if _, err := layoutDigest(idx, "latest"); err == nil || !strings.Contains(err.Error(), `no image tagged "latest"`) {
		t.Errorf("latest in a two-image layout: %v", err)
	}
	one := ocispecs.Index{Manifests: idx.Manifests[:1]}
	if got, err := layoutDigest(one, "latest"); err != nil || got.String() != d1 {
		t.Errorf("a layout with one image needs no tag: %s %v", got, err)
	}
}

func TestParseCacheOptions(t *testing.T) {
	from := []struct {
		in   string
		want bkclient.CacheOptionsEntry
		err  string
	}{
		{"type=local,src=/c", bkclient.CacheOptionsEntry{Type: "local", Attrs: map[string]string{"src": "/c"}}, ""},
		{"type=registry,ref=localhost:5000/cache:1", bkclient.CacheOptionsEntry{Type: "registry", Attrs: map[string]string{"ref": "localhost:5000/cache:1"}}, ""},
		{"app:cache", bkclient.CacheOptionsEntry{Type: "registry", Attrs: map[string]string{"ref": "docker.io/library/app:cache"}}, ""},
		{"type=local", bkclient.CacheOptionsEntry{}, "needs src=DIR"},
		{"type=registry", bkclient.CacheOptionsEntry{}, "needs ref="},
		{"type=registry,ref=UPPER", bkclient.CacheOptionsEntry{}, "invalid --cache-from ref"},
		{"type=inline", bkclient.CacheOptionsEntry{}, "use --cache-from type=registry,ref=IMAGE"},
		{"type=gha", bkclient.CacheOptionsEntry{}, `unsupported --cache-from type "gha"`},
		{"src=/c", bkclient.CacheOptionsEntry{}, "missing type="},
		{"type=local,=x", bkclient.CacheOptionsEntry{}, "is not KEY=VALUE"},
		// Keys the cache type does not read would be dropped in silence.
		{"type=local,src=/c,dest=/d", bkclient.CacheOptionsEntry{}, `type=local has no attribute "dest"; it takes src, digest, tag`},
		{"type=registry,ref=r.io/c,mode=max", bkclient.CacheOptionsEntry{}, `type=registry has no attribute "mode"`},
		{"type=registry,ref=r.io/c,registry.insecure=yes", bkclient.CacheOptionsEntry{}, "registry.insecure must be true or false"},
	}
	for _, c := range from {
		got, err := ParseCacheFrom(c.in)
		if c.err != "" {
			wantUsage(t, c.in, err, c.err)
			continue
		}
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("ParseCacheFrom(%q) = %+v, %v", c.in, got, err)
		}
	}
	to := []struct {
		in   string
		want bkclient.CacheOptionsEntry
		err  string
	}{
		{"type=local,dest=/c", bkclient.CacheOptionsEntry{Type: "local", Attrs: map[string]string{"dest": "/c", "mode": "min"}}, ""},
		{"type=registry,ref=r.io/c,mode=max", bkclient.CacheOptionsEntry{Type: "registry", Attrs: map[string]string{"ref": "r.io/c:latest", "mode": "max"}}, ""},
		{"type=inline", bkclient.CacheOptionsEntry{Type: "inline", Attrs: map[string]string{}}, ""},
		{"type=local", bkclient.CacheOptionsEntry{}, "needs dest=DIR"},
		{"type=local,dest=/c,mode=all", bkclient.CacheOptionsEntry{}, "mode must be min or max"},
		{"type=s3", bkclient.CacheOptionsEntry{}, `unsupported --cache-to type "s3"`},
		{"type=registry,ref=r.io/c,mode=max,oci-mediatypes=true,image-manifest=true,compression=zstd,compression-level=3,ignore-error=true",
			bkclient.CacheOptionsEntry{Type: "registry", Attrs: map[string]string{"ref": "r.io/c:latest", "mode": "max", "oci-mediatypes": "true",
				"image-manifest": "true", "compression": "zstd", "compression-level": "3", "ignore-error": "true"}}, ""},
		{"type=local,dest=/c,src=/d", bkclient.CacheOptionsEntry{}, `type=local has no attribute "src"`},
		{"type=registry,ref=r.io/c,compresion=zstd", bkclient.CacheOptionsEntry{}, `has no attribute "compresion"`},
		{"type=local,dest=/c,ignore-error=maybe", bkclient.CacheOptionsEntry{}, "ignore-error must be true or false"},
		{"type=local,dest=/c,compression=lz4", bkclient.CacheOptionsEntry{}, `invalid --compression "lz4"`},
		{"type=local,dest=/c,compression=gzip,compression-level=12", bkclient.CacheOptionsEntry{}, "use 0 to 9"},
		{"type=inline,mode=max", bkclient.CacheOptionsEntry{}, "inline cache holds only the final image's layers"},
		{"type=inline,ref=r.io/c", bkclient.CacheOptionsEntry{}, `type=inline has no attribute "ref"`},
	}
	for _, c := range to {
		got, err := ParseCacheTo(c.in)
		if c.err != "" {
			wantUsage(t, c.in, err, c.err)
			continue
		}
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("ParseCacheTo(%q) = %+v, %v", c.in, got, err)
		}
	}
}

// A local cache export goes last, where BuildKit's merged response names its manifest; a second is refused.
func TestLocalCacheExportLast(t *testing.T) {
	r := &Request{}
	o := &Options{CacheTo: []string{"type=local,dest=/c", "type=registry,ref=r.io/c", "type=inline"}}
	if err := r.resolveCache(o); err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, e := range r.CacheExports {
		types = append(types, e.Type)
	}
	if want := []string{"registry", "inline", "local"}; !reflect.DeepEqual(types, want) {
		t.Errorf("cache exports in the order %v, want %v", types, want)
	}
	err := (&Request{}).resolveCache(&Options{CacheTo: []string{"type=local,dest=/c", "type=local,dest=/d"}})
	wantUsage(t, "two local cache exports", err, "--cache-to type=local is given 2 times")
	err = (&Request{}).resolveCache(&Options{CacheTo: []string{"type=local,dest=/c,ignore-error=true", "type=inline"}})
	wantUsage(t, "a local cache export that may fail beside another", err, "cannot go beside another --cache-to")
	if err := (&Request{}).resolveCache(&Options{CacheTo: []string{"type=local,dest=/c,ignore-error=true"}}); err != nil {
		t.Errorf("a local cache export with ignore-error=true on its own: %v", err)
	}
}

func TestParseRunOptions(t *testing.T) {
	for in, want := range map[string]string{"db:10.0.0.5": "db=10.0.0.5", "db=10.0.0.5": "db=10.0.0.5", "v6:::1": "v6=::1", " h : 1.2.3.4 ": "h=1.2.3.4"} {
		if got, err := ParseAddHost(in); err != nil || got != want {
			t.Errorf("ParseAddHost(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for in, want := range map[string]string{"db": "use HOST:IP", ":1.2.3.4": "use HOST:IP", "db:x": "is not an IP address", "db:host-gateway": "no host gateway", "a,b:1.2.3.4": "may not contain"} {
		_, err := ParseAddHost(in)
		wantUsage(t, in, err, want)
	}
	for in, want := range map[string]int64{"64m": 64 << 20, "1g": 1 << 30, "1024": 1024, "2k": 2048} {
		if got, err := ParseShmSize(in); err != nil || got != want {
			t.Errorf("ParseShmSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"lots", "-1m", "0", ""} {
		_, err := ParseShmSize(in)
		wantUsage(t, in, err, "invalid --shm-size")
	}
	for in, want := range map[string]string{"nofile=1024:2048": "nofile=1024:2048", "nproc=512": "nproc=512:512"} {
		if got, err := ParseUlimit(in); err != nil || got != want {
			t.Errorf("ParseUlimit(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for in, want := range map[string]string{"nofile": "use NAME=SOFT[:HARD]", "nofile=2048:1024": "soft limit", "bogus=1": "invalid ulimit type", "nofile=x": "invalid --ulimit"} {
		_, err := ParseUlimit(in)
		wantUsage(t, in, err, want)
	}
	if got, err := ParseAllow([]string{"network.host", "security.insecure,network.host"}); err != nil || !reflect.DeepEqual(got, []string{"network.host", "security.insecure"}) {
		t.Errorf("ParseAllow: %v %v", got, err)
	}
	_, err := ParseAllow([]string{"device"})
	wantUsage(t, "device", err, `invalid --allow "device"`)
}

func TestParseExportOptions(t *testing.T) {
	for in, want := range map[string][2]string{
		"type=provenance":                       {"attest:provenance", ""},
		"type=provenance,mode=max":              {"attest:provenance", "mode=max"},
		"type=provenance,mode=min,builder-id=x": {"attest:provenance", "builder-id=x,mode=min"},
		"type=provenance,disabled=true":         {"", ""},
	} {
		k, v, err := ParseAttest(in)
		if err != nil || k != want[0] || v != want[1] {
			t.Errorf("ParseAttest(%q) = %q %q %v; want %q", in, k, v, err, want)
		}
	}
	for in, want := range map[string]string{"type=sbom": "not supported", "mode=max": "missing type=", "type=provenance,mode=full": "mode must be min or max", "type=provenance,disabled=maybe": "disabled must be", "type=vex": "unknown --attest type",
		"type=provenance,mdoe=max": `unknown key "mdoe"`, "type=provenance,reproducible=yes please": "reproducible must be true or false"} {
		_, _, err := ParseAttest(in)
		wantUsage(t, in, err, want)
	}
	for in, want := range map[string][2]string{"true": {"attest:provenance", "mode=min"}, "false": {"", ""}, "mode=max": {"attest:provenance", "mode=max"}} {
		k, v, err := ParseProvenance(in)
		if err != nil || k != want[0] || v != want[1] {
			t.Errorf("ParseProvenance(%q) = %q %q %v; want %q", in, k, v, err, want)
		}
	}
	for in, want := range map[string]map[string]string{
		"org.opencontainers.image.title=app":  {"annotation-manifest.org.opencontainers.image.title": "app"},
		"index:k=v":                           {"annotation-index.k": "v"},
		"manifest,index:k=a=b":                {"annotation-manifest.k": "a=b", "annotation-index.k": "a=b"},
		"manifest[linux/arm64]:k=v":           {"annotation-manifest[linux/arm64].k": "v"},
		"manifest-descriptor[arm64]:k=v":      {"annotation-manifest-descriptor[linux/arm64].k": "v"},
		"index-descriptor:k=":                 {"annotation-index-descriptor.k": ""},
		"com.example.empty-type:with-colon=1": {"annotation-manifest.com.example.empty-type:with-colon": "1"},
	} {
		if got, err := ParseAnnotation(in); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("ParseAnnotation(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for in, want := range map[string]string{"novalue": "invalid --annotation", "=v": "invalid --annotation", "bogus:k=v": `unknown type "bogus"`, "index[linux/amd64]:k=v": "can name a platform", "manifest[linux/arm65]:k=v": "unknown architecture",
		"manifest[linux/amd64:k=v": "unbalanced or misplaced brackets", "manifest[linux/amd64]k=v": "unbalanced or misplaced brackets",
		"manifestlinux/amd64]:k=v": "unbalanced or misplaced brackets", "manifest[linux/amd64/v9]:k=v": "amd64 has no variant v9"} {
		_, err := ParseAnnotation(in)
		wantUsage(t, in, err, want)
	}
	compress := []struct {
		kind, level string
		want        map[string]string
		err         string
	}{
		{"", "", nil, ""},
		{"zstd", "", map[string]string{"compression": "zstd", "force-compression": "true"}, ""},
		{"zstd", "19", map[string]string{"compression": "zstd", "force-compression": "true", "compression-level": "19"}, ""},
		{"", "9", map[string]string{"compression": "gzip", "force-compression": "true", "compression-level": "9"}, ""},
		{"estargz", "0", map[string]string{"compression": "estargz", "force-compression": "true", "compression-level": "0"}, ""},
		{"lz4", "", nil, `invalid --compression "lz4"`},
		{"gzip", "10", nil, "use 0 to 9"},
		{"zstd", "0", nil, "use 1 to 22"},
		{"uncompressed", "1", nil, "does not apply"},
		{"gzip", "fast", nil, `invalid --compression-level "fast"`},
	}
	for _, c := range compress {
		got, err := ParseCompression(c.kind, c.level)
		if c.err != "" {
			wantUsage(t, c.kind+" "+c.level, err, c.err)
			continue
		}
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("ParseCompression(%q, %q) = %v, %v; want %v", c.kind, c.level, got, err, c.want)
		}
	}
	for in, want := range map[string]int64{"0": 0, "1700000000": 1700000000, " 42 ": 42} {
		if got, err := ParseSourceDateEpoch(in); err != nil || got != want {
			t.Errorf("ParseSourceDateEpoch(%q) = %d, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "-1", "1.5", "yesterday"} {
		_, err := ParseSourceDateEpoch(in)
		wantUsage(t, in, err, "invalid SOURCE_DATE_EPOCH")
	}
}

// TestPrepareBuildOptions checks how the options reach the solve request.
func TestPrepareBuildOptions(t *testing.T) {
	dir := writeContext(t, "FROM scratch\n")
	secret := filepath.Join(dir, "token")
	os.WriteFile(secret, []byte("s"), 0o600)
	extra := t.TempDir()
	layout := t.TempDir()
	dt, _ := json.Marshal(ocispecs.Index{Manifests: []ocispecs.Descriptor{{MediaType: ocispecs.MediaTypeImageIndex, Digest: digest.Digest("sha256:" + strings.Repeat("b", 64))}}})
	os.WriteFile(filepath.Join(layout, "index.json"), dt, 0o644)
	t.Setenv("SOURCE_DATE_EPOCH", "99")
	o := &Options{
		ContextDir:    dir,
		Secrets:       []string{"id=token,src=" + secret},
		BuildContexts: []string{"extra=" + extra, "base=docker-image://alpine", "layout=oci-layout://" + layout},
		CacheFrom:     []string{"type=local,src=" + filepath.Join(dir, "no-cache-yet"), "type=registry,ref=localhost:5000/c"},
		CacheTo:       []string{"type=inline"},
		NoCacheFilter: []string{"a,b", "a"},
		Network:       "host",
		AddHosts:      []string{"db:10.0.0.5", "x=1.2.3.4"},
		ShmSize:       "1m",
		Ulimits:       []string{"nofile=1:2", "nproc=3"},
		Attest:        []string{"type=provenance,mode=max"},
		Annotations:   []string{"index:k=v"},
		Compression:   "zstd",
		BuildkitdGzip: true,
	}
	r, err := parse(o)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	want := map[string]string{
		"force-network-mode":          "host",
		"add-hosts":                   "db=10.0.0.5,x=1.2.3.4",
		"shm-size":                    "1048576",
		"ulimit":                      "nofile=1:2,nproc=3:3",
		"no-cache":                    "a,b",
		"attest:provenance":           "mode=max",
		"build-arg:SOURCE_DATE_EPOCH": "99",
		"context:extra":               "local:kiln-context-0",
		"context:base":                "docker-image://alpine",
		"context:layout":              "oci-layout://kiln-context-2:latest@sha256:" + strings.Repeat("b", 64),
	}
	for k, v := range want {
		if got, ok := r.FrontendAttrs[k]; !ok || got != v {
			t.Errorf("attr %s = %q (set %v), want %q", k, got, ok, v)
		}
	}
	if !reflect.DeepEqual(r.Entitlements, []string{"network.host"}) {
		t.Errorf("--network host must grant network.host, got %v", r.Entitlements)
	}
	if r.ContextDirs["kiln-context-0"] != extra || r.OCIStores["kiln-context-2"] == nil {
		t.Errorf("contexts: dirs %v stores %v", r.ContextDirs, r.OCIStores)
	}
	if len(r.CacheImports) != 1 || r.CacheImports[0].Type != "registry" || len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "no cache there yet") {
		t.Errorf("a missing local cache is skipped with a warning: imports %+v warnings %q", r.CacheImports, r.Warnings)
	}
	if len(r.CacheExports) != 1 || len(r.Attachables) != 1 {
		t.Errorf("cache exports %+v, attachables %d", r.CacheExports, len(r.Attachables))
	}
	entries := r.WithExportAttrs([]bkclient.ExportEntry{
		{Type: bkclient.ExporterImage, Attrs: map[string]string{"compression": "gzip"}},
		{Type: bkclient.ExporterOCI},
		{Type: bkclient.ExporterLocal},
	})
	if a := entries[0].Attrs; a["compression"] != "gzip" || a["rewrite-timestamp"] != "true" || a["annotation-index.k"] != "v" {
		t.Errorf("image exporter attrs %v: -o attributes win, the rest are added", a)
	}
	if a := entries[1].Attrs; a["compression"] != "zstd" || a["force-compression"] != "true" || a[GzipAttr] != GzipBuildkitd {
		t.Errorf("oci exporter attrs %v", a)
	}
	if len(entries[2].Attrs) != 0 {
		t.Errorf("the local exporter writes files, not an image: attrs %v", entries[2].Attrs)
	}
}

func TestPrepareNoCacheWinsOverFilter(t *testing.T) {
	r, err := parse(&Options{ContextDir: writeContext(t, "FROM scratch\n"), NoCache: true, NoCacheFilter: []string{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	if r.FrontendAttrs["no-cache"] != "" {
		t.Errorf("no-cache %q, want every stage", r.FrontendAttrs["no-cache"])
	}
}

func TestOptionHint(t *testing.T) {
	for msg, want := range map[string]string{
		"failed to load LLB: network.host is not allowed":      "pass --allow network.host",
		"failed to load LLB: security.insecure is not allowed": "pass --allow security.insecure",
		"secret token: not found":                              "--secret id=token,src=FILE",
		`no SSH key "" forwarded from the client`:              "--ssh default",
		`no SSH key "deploy" forwarded from the client`:        "--ssh deploy=SOCKET|KEYFILE",
		"something else": "",
	} {
		if got := OptionHint(msg); (want == "") != (got == "") || !strings.Contains(got, want) {
			t.Errorf("OptionHint(%q) = %q, want %q", msg, got, want)
		}
	}
	err := WithOptionHint(&stepError{msg: "step x failed: secret token: not found"})
	if _, ok := err.(*stepError); !ok || !strings.Contains(err.Error(), "step x failed: secret token: not found: pass the secret with --secret id=token") {
		t.Errorf("hint on a step error: %v", err)
	}
	err = WithOptionHint(errors.New("failed to load LLB: network.host is not allowed by the builder"))
	if want := "network.host is not allowed: RUN --network=host needs it granted: pass --allow network.host"; err.Error() != want {
		t.Errorf("hint on an entitlement error: %q, want %q", err, want)
	}
}

// stepError is a Hintable error, as builder's BuildError.
type stepError struct{ msg string }

func (e *stepError) Error() string       { return e.msg }
func (e *stepError) AddHint(hint string) { e.msg += ": " + hint }

// TestParseStdinRemovedOnError checks that a Parse that fails removes the
// copy of a Dockerfile read from standard input: there is no Request to
// Close.
func TestParseStdinRemovedOnError(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	_, err := parse(&Options{ContextDir: t.TempDir(), Dockerfile: "-", Stdin: strings.NewReader("FROM scratch\n"), Progress: "loud"})
	wantUsage(t, "bad progress", err, "invalid --progress")
	if left, _ := os.ReadDir(tmp); len(left) > 0 {
		t.Errorf("a failed Parse left %s", left[0].Name())
	}
}

func TestCheckSSHPath(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, key, _ := ed25519.GenerateKey(nil)
	plain, err := ssh.MarshalPrivateKey(key, "plain")
	if err != nil {
		t.Fatal(err)
	}
	locked, err := ssh.MarshalPrivateKeyWithPassphrase(key, "locked", []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, b, 0o600)
		return p
	}
	if err := checkSSHPath(context.Background(), "default", sock); err != nil {
		t.Errorf("agent socket: %v", err)
	}
	if err := checkSSHPath(context.Background(), "deploy", write("plain", pem.EncodeToMemory(plain))); err != nil {
		t.Errorf("unencrypted key: %v", err)
	}
	wantUsage(t, "encrypted key", checkSSHPath(context.Background(), "deploy", write("locked", pem.EncodeToMemory(locked))), "protected by a passphrase")
	wantUsage(t, "not a key", checkSSHPath(context.Background(), "deploy", write("text", []byte("hello"))), "neither an ssh-agent socket nor a private key")
	wantUsage(t, "missing", checkSSHPath(context.Background(), "deploy", filepath.Join(dir, "missing")), "no such file or directory")
}

func TestSourceDateEpochFromBuildArg(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "5")
	r, err := parse(&Options{ContextDir: writeContext(t, "FROM scratch\n"), BuildArgs: []string{"SOURCE_DATE_EPOCH=7"}})
	if err != nil {
		t.Fatal(err)
	}
	if r.FrontendAttrs["build-arg:SOURCE_DATE_EPOCH"] != "7" || r.ExportAttrs["rewrite-timestamp"] != "true" {
		t.Errorf("--build-arg SOURCE_DATE_EPOCH wins over the environment and rewrites timestamps: %v %v", r.FrontendAttrs, r.ExportAttrs)
	}
	r, err = parse(&Options{ContextDir: writeContext(t, "FROM scratch\n"), SourceDateEpoch: "9", BuildArgs: []string{"SOURCE_DATE_EPOCH=7"}})
	if err != nil || r.FrontendAttrs["build-arg:SOURCE_DATE_EPOCH"] != "9" {
		t.Errorf("--source-date-epoch wins: %v %v", r, err)
	}
	_, err = parse(&Options{ContextDir: writeContext(t, "FROM scratch\n"), BuildArgs: []string{"SOURCE_DATE_EPOCH=soon"}})
	wantUsage(t, "bad build arg", err, `invalid SOURCE_DATE_EPOCH "soon"`)
}
