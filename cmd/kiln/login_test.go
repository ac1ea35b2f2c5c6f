package main

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/safeio"
)

// TestReadSecret: one line ending goes, other white space stays (as
// docker keeps it); a password without end is refused at the limit, and
// an interrupted wait ends.
func TestReadSecret(t *testing.T) {
	for in, want := range map[string]string{"s3cret\n": "s3cret", "s3cret\r\n": "s3cret", " a b \n\n": " a b \n", "tok": "tok"} {
		if got, err := readSecret(context.Background(), strings.NewReader(in)); err != nil || got != want {
			t.Errorf("readSecret(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	var large *safeio.TooLargeError
	if _, err := readSecret(context.Background(), io.LimitReader(zeros{}, maxSecret+1)); !errors.As(err, &large) {
		t.Errorf("a password over the limit: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	pr, pw := io.Pipe()
	defer pw.Close()
	if _, err := readSecret(ctx, pr); !errors.Is(err, safeio.ErrInterrupted) {
		t.Errorf("an interrupted read: %v", err)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
