package request

import (
	"strings"
	"testing"
)

func TestParseOutput(t *testing.T) {
	cases := map[string]Output{
		"type=oci,dest=out.tar":           {Type: "oci", Dest: "out.tar"},
		"type=local,dest=dir":             {Type: "local", Dest: "dir"},
		"dir":                             {Type: "local", Dest: "dir"},
		"-":                               {Type: "tar", Dest: "-"},
		"type=image,push=true":            {Type: "image"},
		`type=image,"name=a,b",push=true`: {Type: "image"},
		"type=registry,compression=zstd":  {Type: "registry"},
	}
	for in, want := range cases {
		got, err := ParseOutput(in)
		if err != nil || got.Type != want.Type || got.Dest != want.Dest {
			t.Errorf("ParseOutput(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	if o, _ := ParseOutput(`type=image,"name=a,b",push=true`); o.Attrs["name"] != "a,b" || o.Attrs["push"] != "true" {
		t.Errorf("attrs %v", o.Attrs)
	}
	bad := map[string]string{
		"":                  "empty --output",
		"type=oci":          "needs dest=PATH",
		"type=local,dest=-": "writes a directory",
		"type=zip,dest=x":   `unknown --output type "zip"`,
		"dest=x,foo=bar":    "missing type=",
		"type=oci,novalue":  "is not KEY=VALUE",
	}
	for in, want := range bad {
		if _, err := ParseOutput(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseOutput(%q) = %v, want %q", in, err, want)
		}
	}
}
