package request

import "strings"

// parseUnique parses each of values, in order, and refuses a second value
// with the same key: twice(key) says which option named it twice.
func parseUnique[T any](values []string, parse func(string) (T, error), key func(T) string, twice func(key string) error) ([]T, error) {
	out := make([]T, 0, len(values))
	seen := map[string]bool{}
	for _, v := range values {
		x, err := parse(v)
		if err != nil {
			return nil, err
		}
		k := key(x)
		if seen[k] {
			return nil, twice(k)
		}
		seen[k] = true
		out = append(out, x)
	}
	return out, nil
}

// parseJoined parses each of values and joins the results with commas, as
// BuildKit's frontend attributes take lists; no values give "".
func parseJoined(values []string, parse func(string) (string, error)) (string, error) {
	out := make([]string, 0, len(values))
	for _, v := range values {
		s, err := parse(v)
		if err != nil {
			return "", err
		}
		out = append(out, s)
	}
	return strings.Join(out, ","), nil
}
