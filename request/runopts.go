package request

import (
	"net"
	"slices"
	"strconv"
	"strings"

	units "github.com/docker/go-units"

	"github.com/kiln-build/kiln/usage"
)

// Entitlements a build may be granted with --allow; the engine permits
// exactly these.
const (
	EntitlementNetworkHost      = "network.host"
	EntitlementSecurityInsecure = "security.insecure"
)

// ParseAddHost parses an --add-host value, "HOST:IP" as docker writes it or
// "HOST=IP" as buildx also accepts, into BuildKit's "HOST=IP".
func ParseAddHost(s string) (string, error) {
	host, ip, ok := strings.Cut(s, "=")
	if !ok {
		host, ip, ok = strings.Cut(s, ":")
	}
	host, ip = strings.TrimSpace(host), strings.TrimSpace(ip)
	if !ok || host == "" || ip == "" {
		return "", usage.Errorf("invalid --add-host %q: use HOST:IP, e.g. db.internal:10.0.0.5", s)
	}
	if strings.ContainsAny(host, ", \t\"") {
		return "", usage.Errorf("invalid --add-host %q: host name %q may not contain spaces, commas or quotes", s, host)
	}
	if ip == "host-gateway" {
		return "", usage.Errorf("invalid --add-host %q: kiln has no host gateway (steps share the host's network): use 127.0.0.1 or the host's address", s)
	}
	if net.ParseIP(ip) == nil {
		return "", usage.Errorf("invalid --add-host %q: %q is not an IP address", s, ip)
	}
	return host + "=" + ip, nil
}

// ParseShmSize parses --shm-size ("64m", "1g", "1048576") into bytes.
func ParseShmSize(s string) (int64, error) {
	n, err := units.RAMInBytes(strings.TrimSpace(s))
	if err != nil {
		return 0, usage.Errorf("invalid --shm-size %q: use a size such as 64m or 1g", s)
	}
	if n <= 0 {
		return 0, usage.Errorf("invalid --shm-size %q: the size must be larger than zero", s)
	}
	return n, nil
}

// ParseUlimit checks an --ulimit value, "NAME=SOFT[:HARD]" as docker writes
// it (nofile=1024:2048), and returns it in that form.
func ParseUlimit(s string) (string, error) {
	if !strings.Contains(s, "=") {
		return "", usage.Errorf("invalid --ulimit %q: use NAME=SOFT[:HARD], e.g. nofile=1024:2048", s)
	}
	u, err := units.ParseUlimit(strings.TrimSpace(s))
	if err != nil {
		return "", usage.Errorf("invalid --ulimit %q: %s; use NAME=SOFT[:HARD], e.g. nofile=1024:2048", s, strings.TrimPrefix(err.Error(), "invalid ulimit argument: "))
	}
	return u.String(), nil
}

// ParseAllow checks --allow values (repeatable, or comma-separated).
func ParseAllow(values []string) ([]string, error) {
	var out []string
	for _, v := range values {
		for _, e := range strings.Split(v, ",") {
			switch e = strings.TrimSpace(e); e {
			case EntitlementNetworkHost, EntitlementSecurityInsecure:
				out = appendOnce(out, e)
			default:
				return nil, usage.Errorf("invalid --allow %q: kiln grants %s or %s", e, EntitlementNetworkHost, EntitlementSecurityInsecure)
			}
		}
	}
	return out, nil
}

// setRunAttrs maps the options that shape every RUN step: network, extra
// hosts, /dev/shm, resource limits, entitlements and cache filters.
func (r *Request) setRunAttrs(o *Options) error {
	a := r.FrontendAttrs
	allowed, err := ParseAllow(o.Allow)
	if err != nil {
		return err
	}
	switch o.Network {
	case "", "default":
	case "none":
		a["force-network-mode"] = "none"
	case "host":
		// As in buildx, asking for the host network is the permission.
		a["force-network-mode"] = "host"
		allowed = appendOnce(allowed, EntitlementNetworkHost)
	default:
		return usage.Errorf("invalid --network %q: use default, none or host", o.Network)
	}
	r.Entitlements = allowed
	hosts, err := parseJoined(o.AddHosts, ParseAddHost)
	if err != nil {
		return err
	}
	if hosts != "" {
		a["add-hosts"] = hosts
	}
	if o.ShmSize != "" {
		n, err := ParseShmSize(o.ShmSize)
		if err != nil {
			return err
		}
		a["shm-size"] = strconv.FormatInt(n, 10)
	}
	limits, err := parseJoined(o.Ulimits, ParseUlimit)
	if err != nil {
		return err
	}
	if limits != "" {
		a["ulimit"] = limits
	}
	return r.setNoCacheFilter(o)
}

// setNoCacheFilter rebuilds the named stages; --no-cache (every stage)
// wins over it.
func (r *Request) setNoCacheFilter(o *Options) error {
	var stages []string
	for _, v := range o.NoCacheFilter {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s == "" {
				return usage.Errorf("invalid --no-cache-filter %q: name a stage, e.g. --no-cache-filter deps", v)
			}
			stages = appendOnce(stages, s)
		}
	}
	if len(stages) > 0 && !o.NoCache {
		r.FrontendAttrs["no-cache"] = strings.Join(stages, ",")
	}
	return nil
}

func appendOnce(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}
