package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/kiln-build/kiln/internal/errmsg"
	"github.com/kiln-build/kiln/registry"
	"github.com/kiln-build/kiln/store"
)

// withHints adds to the libraries' typed errors the next step for the user,
// which names kiln commands and flags and so is the command line's to say:
// store returns `image "x" not found in namespace default`, kiln prints
// `...: list images with "kiln images"`. Each hint goes right after its
// error's own text, wherever that sits in the message (wrapped in context,
// or joined with other errors), so messages read as they always have. The
// result still unwraps to err.
func withHints(err error) error {
	msg := err.Error()
	out := msg
	done := map[string]bool{}
	walkErrors(err, func(e error) {
		text := e.Error()
		h := hint(e)
		if h == "" || done[text] {
			return
		}
		done[text] = true
		out = strings.ReplaceAll(out, text, text+h)
	})
	if out == msg {
		return err
	}
	return errmsg.New(out, err)
}

// hint is the text to add after e's own message, or "".
func hint(e error) string {
	switch e := e.(type) {
	case *store.NotFoundError:
		return `: list images with "kiln images"`
	case *store.InUseError:
		return fmt.Sprintf("; remove the container first (ctr containers rm %s) or remove the image anyway with --force", strings.Join(e.Containers, " "))
	case *store.MissingManifestError:
		return fmt.Sprintf(`: fetch it with "kiln pull --platform %s %s"`, e.Platform, store.FamiliarName(e.Name))
	case *registry.AuthError:
		return fmt.Sprintf(`: log in with "kiln login %s" (kiln, docker and nerdctl share the login) or check that the repository exists and you may %s it`, e.Host, e.Op)
	case *store.AbsentPlatformsError:
		return ": pick one of those with --platform, or use --all-platforms"
	case *store.IncompleteError:
		if e.Action == "load" {
			return "" // the content can only come from the archive, as the error says
		}
		var next []string
		if pull := e.Refetch(); len(pull) > 0 {
			next = append(next, fmt.Sprintf(`pull it with "kiln pull --platform %s %s"`, strings.Join(pull, ","), store.FamiliarName(e.Name)))
		} else {
			next = append(next, fmt.Sprintf(`pull it again with "kiln pull --all-platforms %s"`, store.FamiliarName(e.Name)))
		}
		// Of the commands that check, only push takes --platform.
		if len(e.Complete) > 0 && e.Action == "push" {
			next = append(next, fmt.Sprintf("%s with --platform %s", e.Action, strings.Join(e.Complete, ",")))
		}
		return "; " + strings.Join(next, " or ")
	}
	return ""
}

// walkErrors calls fn for err and every error it wraps, depth first,
// following both Unwrap() error and Unwrap() []error (errors.Join).
func walkErrors(err error, fn func(error)) {
	if err == nil {
		return
	}
	fn(err)
	switch u := err.(type) {
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			walkErrors(e, fn)
		}
	default:
		walkErrors(errors.Unwrap(err), fn)
	}
}
