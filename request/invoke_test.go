package request

import (
	"reflect"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/usage"
)

func TestParseInvoke(t *testing.T) {
	cases := []struct {
		onError, invoke string
		want            *Invoke
	}{
		{"", "", nil},
		{"fail", "", nil},
		{"shell", "", &Invoke{Args: []string{DefaultShell}, OnErrorOnly: true}},
		{"", "sh", &Invoke{Args: []string{"sh"}}},
		{"", "  bash -l ", &Invoke{Args: []string{"bash", "-l"}}},
		{"shell", `["sh", "-c", "ls /"]`, &Invoke{Args: []string{"sh", "-c", "ls /"}, OnErrorOnly: true}},
	}
	for _, c := range cases {
		got, err := ParseInvoke(c.onError, c.invoke)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("ParseInvoke(%q, %q) = %+v, %v; want %+v", c.onError, c.invoke, got, err, c.want)
		}
	}
	for _, c := range []struct{ onError, invoke, want string }{
		{"retry", "", `invalid --on-error "retry"`},
		{"", "[sh", `invalid --invoke "[sh"`},
		{"", "[]", `invalid --invoke "[]"`},
		{"", `[""]`, `invalid --invoke`},
	} {
		_, err := ParseInvoke(c.onError, c.invoke)
		if err == nil || !usage.Is(err) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseInvoke(%q, %q) = %v, want a usage error with %q", c.onError, c.invoke, err, c.want)
		}
	}
}

func TestInvokeNeedsABuildAndStdin(t *testing.T) {
	dir := writeContext(t, "FROM scratch\n")
	r, err := parse(&Options{ContextDir: dir, OnError: "shell"})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	if r.Invoke == nil || r.Stdin == nil {
		t.Errorf("--on-error shell: invoke %+v, stdin %v", r.Invoke, r.Stdin)
	}
	if _, err := parse(&Options{ContextDir: dir, OnError: "shell", Check: true}); err == nil || !usage.Is(err) {
		t.Errorf("--check --on-error shell: %v", err)
	}
	if _, err := parse(&Options{ContextDir: dir, Invoke: "sh", Dockerfile: "-", Stdin: strings.NewReader("FROM scratch\n")}); err == nil || !strings.Contains(err.Error(), "not -f -") {
		t.Errorf("-f - --invoke sh: %v", err)
	}
}
