package builder

import (
	"strings"
	"testing"

	"github.com/kiln-build/kiln/request"
)

// TestBuildErrorTakesHint checks that an option hint goes after a failed
// step's message, before the output the step printed.
func TestBuildErrorTakesHint(t *testing.T) {
	err := request.WithOptionHint(&BuildError{Message: "step x failed: secret token: not found", Output: []string{"cat: /run/secrets/token: not found"}})
	want := "step x failed: secret token: not found: pass the secret with --secret id=token,src=FILE or --secret id=token,env=VARIABLE\nlast output:\n  cat: /run/secrets/token"
	if !strings.HasPrefix(err.Error(), want) {
		t.Errorf("hint on a step error:\n%s\nwant it to start with\n%s", err, want)
	}
}
