// Package registry is how kiln reaches image registries, for the image
// commands (package store) and inside builds (package engine) alike: which
// hosts serve a registry and how to talk to them, from containerd's
// hosts.toml files (mirrors, CAs, client certificates, plain HTTP, as
// containerd and nerdctl read them, with containerd's own implementation);
// the credentials docker, nerdctl and kiln share in the docker config file
// (Login, Logout); retries of transfers a bad network broke; and typed
// errors for a registry that refused or could not be reached, with what
// the command line needs to say what to do.
package registry
