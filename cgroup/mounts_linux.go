package cgroup

import (
	"os"
	"strings"

	"github.com/moby/sys/mountinfo"
)

// readMounts lists the cgroup and cgroup2 file systems in mountinfo.
func readMounts(path string) ([]mount, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	infos, err := mountinfo.GetMountsFromReader(f, func(i *mountinfo.Info) (skip, stop bool) {
		// A cgroup file system mounted from below its root (inside a
		// cgroup namespace or a bind mount of a subtree) does not show the
		// paths runc uses: kiln cannot place cgroups through it.
		return (i.FSType != "cgroup" && i.FSType != "cgroup2") || i.Root != "/", false
	})
	if err != nil {
		return nil, err
	}
	out := make([]mount, 0, len(infos))
	for _, i := range infos {
		if i.FSType == "cgroup2" {
			out = append(out, mount{dir: i.Mountpoint, v2: true})
		} else {
			out = append(out, mount{dir: i.Mountpoint, options: strings.Split(i.VFSOptions, ",")})
		}
	}
	return out, nil
}
