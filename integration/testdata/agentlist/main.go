// Command agentlist lists the keys of the ssh-agent at $SSH_AUTH_SOCK, one
// "SHA256:<fingerprint> <comment> (<type>)" line per key, as "ssh-add -l"
// does. The ssh conformance case runs it inside busybox, which has no
// ssh-add; it is built statically for each platform by the test.
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
)

const (
	requestIdentities = 11
	identitiesAnswer  = 12
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "agentlist:", err)
		os.Exit(1)
	}
}

func run() error {
	sock := os.Getenv("SSH_AUTH_SOCK")
	if sock == "" {
		return errors.New("SSH_AUTH_SOCK is not set")
	}
	conn, err := net.Dial("unix", sock)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.Write([]byte{0, 0, 0, 1, requestIdentities}); err != nil {
		return err
	}
	var n uint32
	if err := binary.Read(conn, binary.BigEndian, &n); err != nil {
		return err
	}
	if n > 1<<20 {
		return fmt.Errorf("answer of %d bytes is too long", n)
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(conn, msg); err != nil {
		return err
	}
	r := bytes.NewReader(msg)
	kind, _ := r.ReadByte()
	if kind != identitiesAnswer {
		return fmt.Errorf("unexpected answer type %d", kind)
	}
	var count uint32
	if err := binary.Read(r, binary.BigEndian, &count); err != nil {
		return err
	}
	if count == 0 {
		fmt.Println("The agent has no identities.")
	}
	for i := uint32(0); i < count; i++ {
		blob, err := readString(r)
		if err != nil {
			return err
		}
		comment, err := readString(r)
		if err != nil {
			return err
		}
		typ, _ := readString(bytes.NewReader(blob))
		sum := sha256.Sum256(blob)
		fmt.Printf("SHA256:%s %s (%s)\n", base64.RawStdEncoding.EncodeToString(sum[:]), comment, typ)
	}
	return nil
}

func readString(r *bytes.Reader) ([]byte, error) {
	var n uint32
	if err := binary.Read(r, binary.BigEndian, &n); err != nil {
		return nil, err
	}
	if int64(n) > int64(r.Len()) {
		return nil, errors.New("truncated answer")
	}
	b := make([]byte, n)
	_, err := io.ReadFull(r, b)
	return b, err
}
