package config

import (
	"errors"
	"fmt"
	"strings"
)

// Error is a configuration setting that is wrong: the one error type of
// configuration problems. Every command exits 2 on it.
type Error struct {
	// Field is the setting's YAML path ("rotation.rotate_every",
	// "notify.recipients.key_created"), or the environment variable
	// ("KEYROT_ROTATE_EVERY") or "config file" it came from.
	Field string
	// Value is the offending value as written; empty for secrets.
	Value string
	// Reason says what is wrong and, where one fits, what was meant.
	Reason string
}

func (e *Error) Error() string {
	if e.Value != "" {
		return fmt.Sprintf("config: %s: %q: %s", e.Field, e.Value, e.Reason)
	}
	return fmt.Sprintf("config: %s: %s", e.Field, e.Reason)
}

// Errors are every problem found at once, in the order found.
type Errors []*Error

// Error lists the problems, one a line.
func (es Errors) Error() string {
	if len(es) == 1 {
		return es[0].Error()
	}
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = "  " + strings.TrimPrefix(e.Error(), "config: ")
	}
	return fmt.Sprintf("config: %d problems:\n%s", len(es), strings.Join(lines, "\n"))
}

// Unwrap gives errors.As and errors.Is each problem.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// add records a problem.
func (es *Errors) add(field, value, reason string) {
	*es = append(*es, &Error{Field: field, Value: value, Reason: reason})
}

// addErr records err: its problems if it is an *Error or Errors, else one
// problem at field.
func (es *Errors) addErr(field string, err error) {
	var list Errors
	var one *Error
	switch {
	case err == nil:
	case errors.As(err, &list):
		*es = append(*es, list...)
	case errors.As(err, &one):
		*es = append(*es, one)
	default:
		es.add(field, "", err.Error())
	}
}

// err is es as an error, nil when empty.
func (es Errors) err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

// IsConfigError reports whether err is a configuration problem (an *Error
// or Errors): commands exit 2 on it.
func IsConfigError(err error) bool {
	var one *Error
	var list Errors
	return errors.As(err, &one) || errors.As(err, &list)
}
