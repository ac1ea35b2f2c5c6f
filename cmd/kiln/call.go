package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/moby/buildkit/frontend/subrequests"
	"github.com/moby/buildkit/frontend/subrequests/lint"
	"github.com/moby/buildkit/frontend/subrequests/outline"
	"github.com/moby/buildkit/frontend/subrequests/targets"
	"github.com/moby/buildkit/solver/pb"
	"google.golang.org/protobuf/proto"

	"github.com/kiln-build/kiln/builder"
	"github.com/kiln-build/kiln/request"
)

// printCall prints the frontend's answer to --call on w as buildx does and
// returns the exit status it asks for: 1 when checks found something
// (unless ignorestatus=true). A check that stopped at an error in the
// Dockerfile is returned as the error, with the lines it points at.
// Sources are named as the user named the Dockerfile, df.
func printCall(w io.Writer, res *builder.CallResult, df request.Dockerfile) (int, error) {
	meta := map[string]string{}
	for k, v := range res.Metadata {
		meta[k] = string(v)
	}
	call := res.Call
	switch call.Name {
	case "outline":
		if err := printAnswer(w, outline.PrintOutline, outline.SubrequestsOutlineDefinition.Version, call.Format, meta); err != nil {
			return 0, err
		}
	case "targets":
		if err := printAnswer(w, targets.PrintTargets, targets.SubrequestsTargetsDefinition.Version, call.Format, meta); err != nil {
			return 0, err
		}
	case "subrequests.describe":
		if err := printAnswer(w, subrequests.PrintDescribe, subrequests.SubrequestsDescribeDefinition.Version, call.Format, meta); err != nil {
			return 0, err
		}
	case "lint":
		if err := printChecks(w, call.Format, meta, sourceNamer(df)); err != nil {
			return 0, err
		}
	default:
		if dt, ok := meta["result.json"]; ok && call.Format == "json" {
			fmt.Fprintln(w, dt)
		} else {
			fmt.Fprint(w, meta["result.txt"])
		}
	}
	if v, ok := meta["result.statuscode"]; ok && !call.IgnoreStatus {
		if n, err := strconv.Atoi(v); err == nil && n != 0 {
			return n, nil
		}
	}
	return 0, nil
}

// printChecks prints the check warnings: a count, then each with its rule,
// link, what it found and the Dockerfile's lines around it.
func printChecks(w io.Writer, format string, meta map[string]string, name lint.SourceInfoMap) error {
	var results lint.LintResults
	if dt, ok := meta["result.json"]; ok {
		if err := json.Unmarshal([]byte(dt), &results); err != nil {
			return fmt.Errorf("reading the Dockerfile frontend's check results: %w", err)
		}
	}
	n := len(results.Warnings)
	if format != "json" && n > 0 {
		if n == 1 {
			fmt.Fprintln(w, "Check complete, 1 warning has been found!")
		} else {
			fmt.Fprintf(w, "Check complete, %d warnings have been found!\n", n)
		}
	}
	print := func(_ []byte, w io.Writer) error { return results.PrintTo(w, name) }
	if err := printAnswer(w, print, lint.SubrequestLintDefinition.Version, format, meta); err != nil {
		return err
	}
	if results.Error != nil {
		if format != "json" && n > 0 {
			fmt.Fprintln(w)
		}
		var b bytes.Buffer
		results.PrintErrorTo(&b, name)
		return errors.New(strings.TrimRight(b.String(), "\n"))
	}
	if n == 0 && format != "json" {
		fmt.Fprintln(w, "Check complete, no warnings found.")
	}
	return nil
}

// sourceNamer names the Dockerfile in printed sources as the user named it
// (its path, or "Dockerfile (stdin)"), not by the base name BuildKit
// reads it by.
func sourceNamer(df request.Dockerfile) lint.SourceInfoMap {
	return func(si *pb.SourceInfo) *pb.SourceInfo {
		if si == nil || si.Filename != df.Name || df.Display == "" {
			return si
		}
		named := proto.Clone(si).(*pb.SourceInfo)
		named.Filename = df.Display
		return named
	}
}

// printAnswer prints an answer as JSON, or with print, or as the frontend's
// own text when its structure is newer than kiln knows.
func printAnswer(w io.Writer, print func([]byte, io.Writer) error, version, format string, meta map[string]string) error {
	if format == "json" {
		fmt.Fprintln(w, meta["result.json"])
		return nil
	}
	if meta["version"] != "" && olderVersion(version, meta["version"]) && meta["result.txt"] != "" {
		fmt.Fprint(w, meta["result.txt"])
		return nil
	}
	return print([]byte(meta["result.json"]), w)
}

// olderVersion reports whether version a (1.0.0) is older than b.
func olderVersion(a, b string) bool {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) || i < len(bs); i++ {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			return x < y
		}
	}
	return false
}
