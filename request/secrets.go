package request

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/moby/buildkit/session/secrets"
	"github.com/moby/buildkit/session/secrets/secretsprovider"
	"github.com/moby/buildkit/session/sshforward/sshprovider"
	"golang.org/x/crypto/ssh"

	"github.com/kiln-build/kiln/internal/safeio"
	"github.com/kiln-build/kiln/usage"
)

// maxSSHKeySize bounds an --ssh private key file: BuildKit's ssh provider
// reads no more than 100 KiB of one.
const maxSSHKeySize = 100 << 10

// Secret is one parsed --secret value: the ID a Dockerfile mounts it by, and
// where its value comes from (a file or an environment variable).
type Secret struct {
	ID   string
	File string
	Env  string
}

// ParseSecret parses docker's --secret syntax: "id=ID,src=FILE",
// "id=ID,env=VAR", "type=file|env,id=ID,source=..." or a bare "ID", which
// takes the environment variable ID when it is set and the file ID
// otherwise, as buildx does. It checks the syntax only.
func ParseSecret(s string) (Secret, error) {
	fields, err := splitFields("--secret", s)
	if err != nil {
		return Secret{}, err
	}
	var sec Secret
	typ := ""
	for _, f := range fields {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			if len(fields) == 1 && f != "" {
				return Secret{ID: f}, nil
			}
			return Secret{}, usage.Errorf("invalid --secret %q: %q is not KEY=VALUE; use id=ID,src=FILE or id=ID,env=VARIABLE", s, f)
		}
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "id":
			sec.ID = v
		case "src", "source":
			sec.File = v
		case "env":
			sec.Env = v
		case "type":
			if v != "file" && v != "env" {
				return Secret{}, usage.Errorf("invalid --secret %q: type must be file or env, not %q", s, v)
			}
			typ = v
		default:
			return Secret{}, usage.Errorf("invalid --secret %q: unknown key %q; use id=ID,src=FILE or id=ID,env=VARIABLE", s, k)
		}
	}
	if typ == "env" && sec.Env == "" {
		sec.Env, sec.File = sec.File, ""
	}
	if sec.File == "" && sec.Env == "" {
		switch typ {
		case "env":
			sec.Env = sec.ID
		case "file":
			sec.File = sec.ID
		}
	}
	switch {
	case sec.ID == "":
		return Secret{}, usage.Errorf("invalid --secret %q: missing id=; use id=ID,src=FILE or id=ID,env=VARIABLE", s)
	case sec.File != "" && sec.Env != "":
		return Secret{}, usage.Errorf("invalid --secret %q: give either src=FILE or env=VARIABLE, not both", s)
	}
	return sec, nil
}

// source resolves where the value of s comes from and checks that it is
// there, so a typo fails before the build starts.
func (s Secret) source() (secretsprovider.Source, error) {
	if s.File == "" && s.Env == "" {
		if _, ok := os.LookupEnv(s.ID); ok {
			s.Env = s.ID
		} else {
			s.File = s.ID
		}
	}
	if s.Env != "" {
		if _, ok := os.LookupEnv(s.Env); !ok {
			return secretsprovider.Source{}, usage.Errorf("secret %q: environment variable %s is not set: export it, or pass the secret with src=FILE", s.ID, s.Env)
		}
		return secretsprovider.Source{ID: s.ID, Env: s.Env}, nil
	}
	fi, err := safeio.CheckRegular(s.File)
	var notRegular *safeio.NotRegularError
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return secretsprovider.Source{}, usage.Errorf("secret %q: file %s does not exist: check src= of --secret", s.ID, s.File)
	case errors.As(err, &notRegular) && notRegular.Mode.IsDir():
		return secretsprovider.Source{}, usage.Errorf("secret %q: %s is a directory: src= must name a file", s.ID, s.File)
	case errors.As(err, &notRegular):
		return secretsprovider.Source{}, usage.Errorf("secret %q: %s is %s: src= must name a regular file (or use env=VARIABLE)", s.ID, s.File, safeio.Kind(notRegular.Mode))
	case err != nil:
		return secretsprovider.Source{}, usage.Errorf("secret %q: cannot read %s: %w", s.ID, s.File, err)
	case fi.Size() > secretsprovider.MaxSecretSize:
		return secretsprovider.Source{}, usage.Errorf("secret %q: %s is larger than the %d bytes a secret may hold", s.ID, s.File, secretsprovider.MaxSecretSize)
	}
	return secretsprovider.Source{ID: s.ID, FilePath: s.File}, nil
}

// secretStore hands the build the secrets of --secret when a step mounts
// one, as BuildKit's own file store does, but reads a file only when it is
// still a regular file and no larger than a secret may be: a file swapped
// for a named pipe or a device after Parse checked it must not hang or
// flood the build.
type secretStore map[string]secretsprovider.Source

// GetSecret returns the value of the secret id.
func (s secretStore) GetSecret(ctx context.Context, id string) ([]byte, error) {
	src, ok := s[id]
	if !ok {
		return nil, secrets.ErrNotFound
	}
	if src.Env != "" {
		return []byte(os.Getenv(src.Env)), nil
	}
	dt, err := safeio.ReadFile(ctx, src.FilePath, secretsprovider.MaxSecretSize)
	if err != nil {
		return nil, fmt.Errorf("reading secret %q: %w", id, err)
	}
	return dt, nil
}

// ParseSSH parses docker's --ssh syntax: "default" (the agent at
// $SSH_AUTH_SOCK), or "ID=PATH[,PATH...]" where each PATH is an agent socket
// or a private key file. It checks the syntax only.
func ParseSSH(s string) (sshprovider.AgentConfig, error) {
	id, paths, hasPaths := strings.Cut(s, "=")
	id = strings.TrimSpace(id)
	if id == "" {
		return sshprovider.AgentConfig{}, usage.Errorf("invalid --ssh %q: missing ID; use default, or ID=PATH with an agent socket or key file", s)
	}
	if strings.ContainsAny(id, ", ") {
		return sshprovider.AgentConfig{}, usage.Errorf("invalid --ssh %q: the ID %q may not contain commas or spaces", s, id)
	}
	cfg := sshprovider.AgentConfig{ID: id}
	if !hasPaths {
		return cfg, nil
	}
	for _, p := range strings.Split(paths, ",") {
		if p == "" {
			return sshprovider.AgentConfig{}, usage.Errorf("invalid --ssh %q: empty path; use ID=PATH with an agent socket or key file", s)
		}
		cfg.Paths = append(cfg.Paths, p)
	}
	return cfg, nil
}

// resolveSecrets turns --secret and --ssh into the session attachables that
// hand their values to the build. Values are read only when a step mounts
// them; nothing here puts them in the build's definition.
func (r *Request) resolveSecrets(ctx context.Context, o *Options) error {
	secrets, err := parseUnique(o.Secrets, ParseSecret, func(s Secret) string { return s.ID }, func(id string) error {
		return usage.Errorf("secret %q is given twice: give each --secret id once", id)
	})
	if err != nil {
		return err
	}
	store := secretStore{}
	for _, sec := range secrets {
		src, err := sec.source()
		if err != nil {
			return err
		}
		store[sec.ID] = src
	}
	if len(store) > 0 {
		r.Attachables = append(r.Attachables, secretsprovider.NewSecretProvider(store))
	}
	return r.resolveSSH(ctx, o)
}

func (r *Request) resolveSSH(ctx context.Context, o *Options) error {
	configs, err := parseUnique(o.SSH, ParseSSH, func(c sshprovider.AgentConfig) string { return c.ID }, func(id string) error {
		return usage.Errorf("--ssh %s is given twice: give each ID once", id)
	})
	if err != nil {
		return err
	}
	for i := range configs {
		cfg := &configs[i]
		if len(cfg.Paths) == 0 {
			sock := os.Getenv("SSH_AUTH_SOCK")
			if sock == "" {
				return usage.Errorf("--ssh %s needs an ssh-agent, and SSH_AUTH_SOCK is not set: start one (eval $(ssh-agent); ssh-add) or name a key, e.g. --ssh %s=$HOME/.ssh/id_ed25519", cfg.ID, cfg.ID)
			}
			cfg.Paths = []string{sock}
		}
		for _, p := range cfg.Paths {
			if err := checkSSHPath(ctx, cfg.ID, p); err != nil {
				return err
			}
		}
	}
	if len(configs) == 0 {
		return nil
	}
	sp, err := sshprovider.NewSSHAgentProvider(configs)
	if err != nil {
		return usage.Errorf("--ssh: %w: give an ssh-agent socket or an unencrypted private key file", err)
	}
	r.Attachables = append(r.Attachables, sp)
	return nil
}

// checkSSHPath checks that an --ssh path is an agent socket or a private
// key that can be used without a passphrase. BuildKit's ssh provider reads
// the keys again right after this check, so a named pipe or a device is
// refused here, before it could block or flood that read.
func checkSSHPath(ctx context.Context, id, p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return usage.Errorf("--ssh %s: %s: %w: give an ssh-agent socket or a private key file", id, p, errors.Unwrap(err))
	}
	if fi.Mode()&fs.ModeSocket != 0 {
		return nil
	}
	dt, err := safeio.ReadFile(ctx, p, maxSSHKeySize)
	if err != nil {
		err = inputError(p, err, "give an ssh-agent socket or a private key file", "more than a private key; give an ssh-agent socket or a private key file")
		if usage.Is(err) {
			return usage.Errorf("--ssh %s: %w", id, err)
		}
		return err
	}
	_, err = ssh.ParseRawPrivateKey(dt)
	var missing *ssh.PassphraseMissingError
	switch {
	case errors.As(err, &missing):
		return usage.Errorf("--ssh %s: key %s is protected by a passphrase: add it to an ssh-agent (ssh-add) and pass --ssh %s instead", id, p, id)
	case err != nil:
		return usage.Errorf("--ssh %s: %s is neither an ssh-agent socket nor a private key (%w)", id, p, err)
	}
	return nil
}

// splitFields splits a comma-separated flag value, honouring CSV quotes.
func splitFields(flag, s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, usage.Errorf("empty %s value", flag)
	}
	if strings.ContainsAny(s, "\r\n") {
		return nil, usage.Errorf("invalid %s %q: it may not contain line breaks", flag, s)
	}
	r := csv.NewReader(strings.NewReader(s))
	r.LazyQuotes = true
	fields, err := r.Read()
	if err != nil {
		return nil, usage.Errorf("invalid %s %q: %w", flag, s, err)
	}
	return fields, nil
}
