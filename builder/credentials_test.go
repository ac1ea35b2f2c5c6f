package builder

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/docker/cli/cli/config"
	"github.com/moby/buildkit/session/auth"
	"github.com/moby/buildkit/session/auth/authprovider"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kiln-build/kiln/request"
)

func TestBuildRegistries(t *testing.T) {
	dir := t.TempDir()
	dockerfile := `ARG BASE_REGISTRY=base.example.com
ARG OVERRIDDEN=default.example.com/x
FROM ${BASE_REGISTRY}/os:${TARGETARCH} AS base
FROM golang:1.22 AS build
RUN --mount=type=bind,from=tools.example.com/tool:1,target=/t true
RUN --mount=type=cache,target=/c true
COPY --from=copy.example.com/files:1 /a /a
COPY --from=base /etc /etc
COPY --from=0 /bin /bin
FROM scratch
FROM $OVERRIDDEN
FROM replaced.example.com/x
FROM build
`
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := request.Parse(context.Background(), &request.Options{
		ContextDir: dir, NodesFiles: []string{}, Stderr: &bytes.Buffer{},
		Platforms:     []string{"linux/amd64,linux/arm64"},
		Tags:          []string{"push.example.com:5000/app:1"},
		BuildArgs:     []string{"OVERRIDDEN=arg.example.com/y"},
		CacheFrom:     []string{"type=registry,ref=cache.example.com/app:cache", "type=local,src=" + dir},
		BuildContexts: []string{"replaced.example.com/x=" + dir, "extra=docker-image://ctx.example.com/img:1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got := strings.Join(buildRegistries(r), " ")
	want := "arg.example.com base.example.com cache.example.com copy.example.com ctx.example.com docker.io push.example.com:5000 tools.example.com"
	if got != want {
		t.Fatalf("buildRegistries =\n %s\nwant\n %s", got, want)
	}
}

// TestScopedAuth: a node gets the user's credentials for the registries the
// build uses, and none, with a debug line, for any other host it asks about.
func TestScopedAuth(t *testing.T) {
	dir := t.TempDir()
	cfgJSON := `{"auths": {
		"used.example.com": {"auth": "dXNlcjp1c2VkLXBhc3M="},
		"other.example.com": {"auth": "dXNlcjpvdGhlci1wYXNz"},
		"https://index.docker.io/v1/": {"auth": "aHViOmh1Yi1wYXNz"}
	}}`
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfgJSON), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	provider := authprovider.NewDockerAuthProvider(authprovider.DockerAuthProviderConfig{AuthConfigProvider: authprovider.LoadAuthConfig(cfg)})
	inner, ok := provider.(auth.AuthServer)
	if !ok {
		t.Fatal("BuildKit's auth provider does not serve the auth API")
	}
	var logs bytes.Buffer
	logrus.SetOutput(&logs)
	logrus.SetLevel(logrus.DebugLevel)
	defer func() { logrus.SetOutput(os.Stderr); logrus.SetLevel(logrus.InfoLevel) }()

	s := newScopedAuth(inner, "pi (tcp://10.0.0.5:1234)", []string{"docker.io", "used.example.com"})
	ctx := context.Background()
	for host, secret := range map[string]string{"used.example.com": "used-pass", "registry-1.docker.io": "hub-pass", "other.example.com": "", "evil.example.com": ""} {
		resp, err := s.Credentials(ctx, &auth.CredentialsRequest{Host: host})
		if err != nil || resp.Secret != secret {
			t.Errorf("Credentials(%s) = %+v, %v; want secret %q", host, resp, err, secret)
		}
		// Without the wrapper the provider answers for any host.
		if host == "other.example.com" {
			if resp, _ := inner.Credentials(ctx, &auth.CredentialsRequest{Host: host}); resp.Secret != "other-pass" {
				t.Fatalf("the test's docker config has no password for %s: %+v", host, resp)
			}
		}
	}
	if _, err := s.GetTokenAuthority(ctx, &auth.GetTokenAuthorityRequest{Host: "other.example.com"}); status.Code(err) != codes.Unavailable {
		t.Errorf("GetTokenAuthority for another host: %v, want Unavailable (BuildKit then pulls anonymously)", err)
	}
	if _, err := s.FetchToken(ctx, &auth.FetchTokenRequest{Host: "other.example.com", Realm: "https://other.example.com/token"}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("FetchToken for another host: %v, want PermissionDenied", err)
	}
	if _, err := s.VerifyTokenAuthority(ctx, &auth.VerifyTokenAuthorityRequest{Host: "other.example.com"}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("VerifyTokenAuthority for another host: %v, want PermissionDenied", err)
	}
	got := strings.Join(s.Refused(), " ")
	if got != "other.example.com evil.example.com" && got != "evil.example.com other.example.com" {
		t.Errorf("Refused() = %q", got)
	}
	if !strings.Contains(logs.String(), "not giving node pi (tcp://10.0.0.5:1234) credentials for other.example.com: the build names no image of that registry (it uses docker.io, used.example.com)") {
		t.Errorf("no debug line for the refusal:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "pass") {
		t.Errorf("a password reached the log:\n%s", logs.String())
	}
}
