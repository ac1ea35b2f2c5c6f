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
		// Attributes the exporter of the type does not read, or values it
		// would refuse only after the build.
		"type=image,bogus=1":                        `type=image has no attribute "bogus"; it takes name, oci-mediatypes`,
		"type=oci,dest=x,compresion=zstd":           `type=oci has no attribute "compresion"`,
		"type=tar,dest=x,compression=zstd":          `type=tar has no attribute "compression"; it takes attestation-prefix, platform-split, mode, src, source-date-epoch`,
		"type=local,dest=x,unpack=true":             `type=local has no attribute "unpack"`,
		"type=oci,dest=x,compression=bogus":         `invalid --compression "bogus"`,
		"type=docker,dest=x,compression-level=99":   `use 0 to 9`,
		"type=image,push=maybe":                     `push must be true or false, not "maybe"`,
		"type=oci,dest=x,oci-mediatypes=":           `oci-mediatypes must be true or false`,
		"type=local,dest=x,mode=move":               `mode must be copy or delete, not "move"`,
		"type=image,source-date-epoch=yesterday":    `invalid SOURCE_DATE_EPOCH "yesterday"`,
		"type=image,annotation-bogus.k=v":           `unrecognized annotation type bogus`,
		"type=image,annotation[linux/amd64/v9].k=v": `amd64 has no variant v9`,
	}
	good := []string{
		"type=image,name=a,push=true,unpack=false,store=true,compression=zstd,compression-level=3,force-compression=true,oci-mediatypes=true,rewrite-timestamp=true,registry.insecure=true,name-canonical=",
		"type=registry,push-by-digest=true,annotation.org.opencontainers.image.title=x,annotation-index.k=v,annotation-manifest[linux/arm64].k=v",
		"type=oci,dest=x,tar=false,oci-artifact=true,attestation-inline=false",
		"type=tar,dest=x,platform-split=false,attestation-prefix=p-",
		"type=local,dest=x,mode=delete,src=/out",
	}
	for _, in := range good {
		if _, err := ParseOutput(in); err != nil {
			t.Errorf("ParseOutput(%q) = %v", in, err)
		}
	}
	for in, want := range bad {
		if _, err := ParseOutput(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseOutput(%q) = %v, want %q", in, err, want)
		}
	}
}
