//go:build unix

package history

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"

	"github.com/kiln-build/kiln/internal/safeio"
)

// lockLog takes the lock a writer holds on its log file while its build
// runs; closing f releases it, also when the process dies.
func lockLog(f *os.File) error {
	return unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
}

// lockHeld reports whether a writer holds the lock of the log file at path.
func lockHeld(path string) bool {
	// Not os.Open: a named pipe put in the log's place would block it.
	f, err := safeio.OpenRegular(path)
	if err != nil {
		return false
	}
	defer f.Close()
	err = unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB)
	return errors.Is(err, unix.EWOULDBLOCK)
}
