package request

import "testing"

// FuzzParseOutput checks that --output values never panic and that a
// parsed output is one kiln can export.
func FuzzParseOutput(f *testing.F) {
	for _, s := range []string{"type=oci,dest=x.tar", "-", "dir", `type=image,"name=a,b",push=true`, "type=local", "type=", "=,=", `"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		o, err := ParseOutput(s)
		if err != nil {
			return
		}
		switch o.Type {
		case "image", "registry":
		case "oci", "docker", "tar", "local":
			if o.Dest == "" {
				t.Fatalf("%q: type %s without a destination", s, o.Type)
			}
		default:
			t.Fatalf("%q: unknown type %q accepted", s, o.Type)
		}
	})
}
