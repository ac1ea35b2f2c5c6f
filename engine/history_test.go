package engine

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/kiln-build/kiln/store"
)

// TestHistoryDirClaimsRoot: the build records go only under a --root that
// is kiln's own, on its real path; a directory of the user's is refused
// before anything is made in it.
func TestHistoryDirClaimsRoot(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	root := filepath.Join(base, "kiln")
	link := filepath.Join(base, "link")
	if err := os.Symlink(root, link); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(root, 0o700); err != nil {
		t.Fatal(err)
	}
	dir, err := HistoryDir(ctx, Config{Store: store.KindEmbedded, Namespace: "default", Root: link})
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(root, stateSubdir, store.EmbeddedID, "default", historySubdir); dir != want {
		t.Errorf("HistoryDir = %q, want %q", dir, want)
	}
	if !marked(root) {
		t.Error("the root was not claimed")
	}

	users := t.TempDir()
	write(t, filepath.Join(users, "notes.txt"), "the user's")
	_, err = HistoryDir(ctx, Config{Store: store.KindEmbedded, Namespace: "default", Root: users})
	var re *RootError
	if !errors.As(err, &re) {
		t.Fatalf("HistoryDir in a directory of the user's: %v, want a RootError", err)
	}
	if marked(users) {
		t.Error("kiln marked the user's directory as its own")
	}
	if _, err := os.Stat(filepath.Join(users, stateSubdir)); err == nil {
		t.Error("kiln made its state directory in the user's directory")
	}
}
