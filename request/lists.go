package request

import "strings"

// parseAll parses each of values, in order.
func parseAll[T any](values []string, parse func(string) (T, error)) ([]T, error) {
	out := make([]T, len(values))
	for i, v := range values {
		x, err := parse(v)
		if err != nil {
			return nil, err
		}
		out[i] = x
	}
	return out, nil
}

// parseUnique is parseAll refusing a second value with the same key:
// twice(key) says which option named it twice.
func parseUnique[T any](values []string, parse func(string) (T, error), key func(T) string, twice func(key string) error) ([]T, error) {
	out, err := parseAll(values, parse)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, x := range out {
		k := key(x)
		if seen[k] {
			return nil, twice(k)
		}
		seen[k] = true
	}
	return out, nil
}

// parseJoined is parseAll joining the results with commas, as BuildKit's
// frontend attributes take lists; no values give "".
func parseJoined(values []string, parse func(string) (string, error)) (string, error) {
	out, err := parseAll(values, parse)
	return strings.Join(out, ","), err
}
