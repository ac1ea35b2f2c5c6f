package builder

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/distribution/reference"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	"github.com/moby/buildkit/session/auth"
	"github.com/moby/buildkit/util/progress/progresswriter"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kiln-build/kiln/emulation"
	"github.com/kiln-build/kiln/platform"
	"github.com/kiln-build/kiln/request"
)

// A node asks the build's session for the credentials of every registry
// it contacts, and BuildKit's auth provider answers for any host it is
// asked about. A node that is compromised, or configured with mirrors the
// user does not know of, could so collect every password of the user's
// docker config. kiln answers a node only for the registries the build
// itself names (buildRegistries); other hosts get no credentials, as for an
// anonymous pull.

// buildRegistries are the registries a build names, as reference domains
// ("docker.io", "registry.example.com:5000"), sorted: those of the image
// names (-t, -o name=), the registry caches (--cache-from, --cache-to), the
// docker-image:// build contexts, and the images the Dockerfile uses:
// FROM, with the global ARGs expanded from their defaults, the --build-arg
// values and the platform arguments of every platform built, COPY --from
// and RUN --mount from=. A base image's ONBUILD can name others: those are
// not known before the build and get no credentials on a node.
func buildRegistries(req *request.Request) []string {
	var refs []string
	names, _ := req.ImageNames()
	refs = append(refs, names...)
	for _, c := range append(slices.Clone(req.CacheImports), req.CacheExports...) {
		if c.Type == "registry" {
			refs = append(refs, c.Attrs["ref"])
		}
	}
	contexts := map[string]bool{}
	buildArgs := map[string]string{}
	for k, v := range req.FrontendAttrs {
		if name, ok := strings.CutPrefix(k, "context:"); ok {
			contexts[name] = true
			if ref, ok := strings.CutPrefix(v, "docker-image://"); ok {
				refs = append(refs, ref)
			}
		}
		if name, ok := strings.CutPrefix(k, "build-arg:"); ok {
			buildArgs[name] = v
		}
	}
	plats := req.Platforms
	if len(plats) == 0 {
		plats = []ocispecs.Platform{emulation.HostPlatform()}
	}
	refs = append(refs, dockerfileImages(req.Dockerfile.Content, buildArgs, plats, contexts)...)

	seen := map[string]bool{}
	var out []string
	for _, r := range refs {
		named, err := reference.ParseNormalizedNamed(r)
		if err != nil {
			continue // the build fails on it with its own message
		}
		if d := reference.Domain(named); !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	sort.Strings(out)
	return out
}

// dockerfileImages lists the image references a Dockerfile pulls, for
// each target platform (and each build platform, since a node builds
// natively and kiln does not know which platform it reports first). Stage
// names, scratch and names that a build context replaces are left out.
// A Dockerfile that does not parse gives none: the build fails on it.
func dockerfileImages(dt []byte, buildArgs map[string]string, plats []ocispecs.Platform, contexts map[string]bool) []string {
	res, err := parser.Parse(bytes.NewReader(dt))
	if err != nil {
		return nil
	}
	stages, metaArgs, err := instructions.Parse(res.AST, nil)
	if err != nil {
		return nil
	}
	lex := shell.NewLex(res.EscapeToken)
	builds := append(slices.Clone(plats), emulation.HostPlatform())
	var refs []string
	add := func(ref string, known map[string]bool) {
		ref = strings.TrimSpace(ref)
		if ref == "" || strings.EqualFold(ref, "scratch") || known[strings.ToLower(ref)] || contexts[ref] {
			return
		}
		if named, err := reference.ParseNormalizedNamed(ref); err != nil || contexts[named.String()] || contexts[reference.FamiliarString(named)] {
			return
		}
		refs = append(refs, ref)
	}
	// Only FROM expands variables, with the global ARGs; BuildKit refuses
	// variables in COPY --from and RUN --mount from=.
	for i, st := range stages {
		for _, cmd := range st.Commands {
			switch c := cmd.(type) {
			case *instructions.CopyCommand:
				if !isIndex(c.From) {
					add(c.From, stageNames(stages[:i]))
				}
			case *instructions.RunCommand:
				for _, m := range instructions.GetMounts(c) {
					if !isIndex(m.From) {
						add(m.From, stageNames(stages[:i]))
					}
				}
			}
		}
	}
	for _, target := range plats {
		for _, build := range builds {
			global := platformArgs(target, build)
			for _, a := range metaArgs {
				for _, kv := range a.Args {
					if v, ok := buildArgs[kv.Key]; ok {
						global[kv.Key] = v
					} else if kv.Value != nil {
						if v, err := expand(lex, *kv.Value, global); err == nil {
							global[kv.Key] = v
						}
					}
				}
			}
			for i := range stages {
				if base, err := expand(lex, stages[i].BaseName, global); err == nil {
					add(base, stageNames(stages[:i]))
				}
			}
		}
	}
	return refs
}

// stageNames are the names of stages, lower case, as FROM, COPY --from and
// RUN --mount from= match them.
func stageNames(stages []instructions.Stage) map[string]bool {
	names := map[string]bool{}
	for _, st := range stages {
		if st.Name != "" {
			names[strings.ToLower(st.Name)] = true
		}
	}
	return names
}

// platformArgs are BuildKit's automatic platform ARGs.
func platformArgs(target, build ocispecs.Platform) map[string]string {
	env := map[string]string{}
	for prefix, p := range map[string]ocispecs.Platform{"TARGET": target, "BUILD": build} {
		env[prefix+"PLATFORM"] = platform.Format(p)
		env[prefix+"OS"] = p.OS
		env[prefix+"ARCH"] = p.Architecture
		env[prefix+"VARIANT"] = p.Variant
	}
	return env
}

func expand(lex *shell.Lex, word string, env map[string]string) (string, error) {
	kv := make([]string, 0, len(env))
	for k, v := range env {
		kv = append(kv, k+"="+v)
	}
	res, err := lex.ProcessWordWithMatches(word, shell.EnvsFromSlice(kv))
	return res.Result, err
}

func isIndex(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}

// credentialHosts are the hosts a node asks credentials for when it
// contacts registries: the registry's own, and for Docker Hub the hosts
// BuildKit and docker's config name it by.
func credentialHosts(registries []string) map[string]bool {
	hosts := map[string]bool{}
	for _, r := range registries {
		hosts[strings.ToLower(r)] = true
		if r == "docker.io" {
			hosts["registry-1.docker.io"] = true
			hosts["index.docker.io"] = true
		}
	}
	return hosts
}

// scopedAuth is the session's auth service for one node: BuildKit's auth
// provider for the registries the build uses, nothing for other hosts.
// A refused host gets an empty answer to Credentials (BuildKit then pulls
// anonymously) and errors from the token calls, so that no token is
// fetched or signed for it with the user's credentials.
type scopedAuth struct {
	inner      auth.AuthServer
	node       string
	hosts      map[string]bool
	registries []string

	mu      sync.Mutex
	refused []string
}

var _ auth.AuthServer = (*scopedAuth)(nil)

// newScopedAuth wraps inner, BuildKit's auth provider, for a build on
// node that uses registries.
func newScopedAuth(inner auth.AuthServer, node string, registries []string) *scopedAuth {
	return &scopedAuth{inner: inner, node: node, hosts: credentialHosts(registries), registries: registries}
}

// Register serves the auth API on the session.
func (s *scopedAuth) Register(server *grpc.Server) { auth.RegisterAuthServer(server, s) }

// SetLogger passes the progress logger on to the provider, which reports
// the credentials it shares in the progress display.
func (s *scopedAuth) SetLogger(l progresswriter.Logger) {
	if sl, ok := s.inner.(interface{ SetLogger(progresswriter.Logger) }); ok {
		sl.SetLogger(l)
	}
}

// allows reports whether credentials for host may go to the node, and
// logs a refusal once per host.
func (s *scopedAuth) allows(host, what string) bool {
	if s.hosts[strings.ToLower(host)] {
		return true
	}
	s.mu.Lock()
	first := !slices.Contains(s.refused, host)
	if first {
		s.refused = append(s.refused, host)
	}
	s.mu.Unlock()
	if first {
		uses := strings.Join(s.registries, ", ")
		if uses == "" {
			uses = "none"
		}
		logrus.Debugf("not giving node %s %s for %s: the build names no image of that registry (it uses %s)", s.node, what, host, uses)
	}
	return false
}

// Refused lists the hosts the node asked credentials for and got none.
func (s *scopedAuth) Refused() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.refused)
}

// Credentials answers with the user's credentials for a registry the
// build uses, and with none otherwise.
func (s *scopedAuth) Credentials(ctx context.Context, req *auth.CredentialsRequest) (*auth.CredentialsResponse, error) {
	if !s.allows(req.Host, "credentials") {
		return &auth.CredentialsResponse{}, nil
	}
	return s.inner.Credentials(ctx, req)
}

// FetchToken fetches a registry token with the user's credentials only
// for a registry the build uses.
func (s *scopedAuth) FetchToken(ctx context.Context, req *auth.FetchTokenRequest) (*auth.FetchTokenResponse, error) {
	if !s.allows(req.Host, "a token") {
		return nil, status.Error(codes.PermissionDenied, refusal(req.Host))
	}
	return s.inner.FetchToken(ctx, req)
}

// GetTokenAuthority is unavailable for other registries: BuildKit then
// asks Credentials, gets none, and fetches an anonymous token itself.
func (s *scopedAuth) GetTokenAuthority(ctx context.Context, req *auth.GetTokenAuthorityRequest) (*auth.GetTokenAuthorityResponse, error) {
	if !s.allows(req.Host, "a token authority") {
		return nil, status.Error(codes.Unavailable, refusal(req.Host))
	}
	return s.inner.GetTokenAuthority(ctx, req)
}

// VerifyTokenAuthority signs only for a registry the build uses.
func (s *scopedAuth) VerifyTokenAuthority(ctx context.Context, req *auth.VerifyTokenAuthorityRequest) (*auth.VerifyTokenAuthorityResponse, error) {
	if !s.allows(req.Host, "a token signature") {
		return nil, status.Error(codes.PermissionDenied, refusal(req.Host))
	}
	return s.inner.VerifyTokenAuthority(ctx, req)
}

func refusal(host string) string {
	return fmt.Sprintf("kiln gives no credentials for %s: the build names no image of that registry", host)
}
