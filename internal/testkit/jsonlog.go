package testkit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// JSONObject decodes line, which must be exactly one JSON object and
// nothing else, and fails if an object in it, at any depth, has a key
// twice (encoding/json would silently keep the last).
func JSONObject(line []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	if tok != json.Delim('{') {
		return nil, fmt.Errorf("not a JSON object: starts with %v", tok)
	}
	v, err := decodeObject(dec)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("more than one JSON value on the line")
	}
	return v, nil
}

// decodeObject decodes the rest of an object whose '{' was read.
func decodeObject(dec *json.Decoder) (map[string]any, error) {
	m := map[string]any{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key := tok.(string) // the decoder only gives string keys here
		if _, ok := m[key]; ok {
			return nil, fmt.Errorf("duplicate key %q", key)
		}
		if m[key], err = decodeValue(dec); err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
	}
	_, err := dec.Token() // '}'
	return m, err
}

func decodeValue(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch tok {
	case json.Delim('{'):
		return decodeObject(dec)
	case json.Delim('['):
		var a []any
		for dec.More() {
			v, err := decodeValue(dec)
			if err != nil {
				return nil, err
			}
			a = append(a, v)
		}
		_, err := dec.Token() // ']'
		return a, err
	}
	return tok, nil
}

// JSONLines decodes every line of out with JSONObject; an empty out has
// none. The error names the line.
func JSONLines(out []byte) ([]map[string]any, error) {
	var recs []map[string]any
	for i, line := range bytes.Split(bytes.TrimSuffix(out, []byte("\n")), []byte("\n")) {
		if len(out) == 0 {
			break
		}
		m, err := JSONObject(line)
		if err != nil {
			return recs, fmt.Errorf("line %d %q: %w", i+1, line, err)
		}
		recs = append(recs, m)
	}
	return recs, nil
}
