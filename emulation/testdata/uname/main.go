// Command uname prints the machine field of uname(2), like "uname -m". The
// emulation tests cross-compile it for a foreign architecture and run it
// through a binfmt_misc handler.
package main

import (
	"fmt"
	"os"
	"syscall"
)

func main() {
	var u syscall.Utsname
	if err := syscall.Uname(&u); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var b []byte
	for _, c := range u.Machine {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	fmt.Println(string(b))
}
