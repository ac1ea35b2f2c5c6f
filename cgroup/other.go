//go:build !linux

package cgroup

import "errors"

var errNotLinux = errors.New("cgroups exist on Linux only")

type oomWatch struct{}

func watchOOM(string) (*oomWatch, error) { return nil, errNotLinux }

func (*oomWatch) count() uint64 { return 0 }
func (*oomWatch) close()        {}

func readMounts(string) ([]mount, error) { return nil, errNotLinux }
