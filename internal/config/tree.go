package config

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Setting is one leaf of the configuration tree, found by reflection over
// Config: a value with a YAML key and environment variables.
type Setting struct {
	// Path is the YAML path, "notify.smtp.addr"; for a setting read from
	// the environment only (yaml:"-"), its first variable's name.
	Path string
	// Section is the top-level YAML key the setting is under ("" for a
	// top-level setting such as region).
	Section string
	// YAML is false for settings read from the environment only.
	YAML bool
	// Env are the variables that set it: the derived KEYROT_<PATH> first,
	// then the older names kept as aliases (env tag).
	Env []string
	// Secret settings come from the environment only and are never printed.
	Secret bool
	// Hidden settings may be written in the file but are never printed
	// either (accounts.external_id: not a secret to AWS, but the member
	// roles' trust condition).
	Hidden bool
	// Field is the Go field's name and Owner its struct type's name, which
	// find the field's doc comment.
	Field, Owner string

	index []int
	typ   reflect.Type
}

var (
	durationType = reflect.TypeOf(Duration(0))
	timeType     = reflect.TypeOf(time.Time{})
	unmarshaler  = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()
)

// isSection reports whether t is a nested block of settings rather than a
// value: a struct that does not decode itself.
func isSection(t reflect.Type) bool {
	return t.Kind() == reflect.Struct && t != timeType && !reflect.PointerTo(t).Implements(unmarshaler)
}

// Settings lists every leaf of the tree in declaration order. New sections
// (a struct field of Config) and new fields are picked up with no other
// code: nested structs recurse, anything else (scalars, lists, maps, lists
// of structs) is one setting.
func Settings() []Setting {
	var out []Setting
	walkType(reflect.TypeOf(Config{}), nil, "", "", &out)
	return out
}

func walkType(t reflect.Type, index []int, prefix, section string, out *[]Setting) {
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		idx := append(append([]int(nil), index...), i)
		name, inline := yamlName(f)
		if inline && isSection(f.Type) {
			walkType(f.Type, idx, prefix, section, out)
			continue
		}
		if name != "-" && isSection(f.Type) {
			sec := section
			if sec == "" {
				sec = name
			}
			walkType(f.Type, idx, prefix+name+".", sec, out)
			continue
		}
		s := Setting{Section: section, Secret: f.Tag.Get("secret") == "true", Hidden: f.Tag.Get("hidden") == "true", Field: f.Name, Owner: t.Name(), index: idx, typ: f.Type}
		if name != "-" {
			s.Path, s.YAML = prefix+name, true
			s.Env = append(s.Env, EnvName(s.Path))
		}
		if tag := f.Tag.Get("env"); tag != "" {
			s.Env = append(s.Env, strings.Split(tag, ",")...)
		}
		if !s.YAML {
			if len(s.Env) == 0 {
				continue // neither file nor environment: not a setting
			}
			s.Path = s.Env[0]
		}
		*out = append(*out, s)
	}
}

// yamlName is the field's YAML key (Go's lower-cased name without a tag,
// as the YAML package does) and whether it is inlined.
func yamlName(f reflect.StructField) (string, bool) {
	tag := f.Tag.Get("yaml")
	name, opts, _ := strings.Cut(tag, ",")
	if name == "" {
		name = strings.ToLower(f.Name)
	}
	return name, strings.Contains(","+opts+",", ",inline,")
}

// EnvName is the environment variable derived from a YAML path:
// "notify.quiet_period" is KEYROT_NOTIFY_QUIET_PERIOD.
func EnvName(path string) string {
	return "KEYROT_" + strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(path))
}

// EnvNames lists every environment variable that sets the config.
func EnvNames() []string {
	var names []string
	for _, s := range Settings() {
		names = append(names, s.Env...)
	}
	return names
}

// Lookup finds the setting at a YAML path (or an environment-only
// setting's variable).
func Lookup(path string) (Setting, bool) {
	for _, s := range Settings() {
		if s.Path == path {
			return s, true
		}
	}
	return Setting{}, false
}

// value is the setting's field in c.
func (s Setting) value(c *Config) reflect.Value {
	return reflect.ValueOf(c).Elem().FieldByIndex(s.index)
}

// Type describes the setting's type for people: the reference and errors.
func (s Setting) Type() string { return typeName(s.typ) }

func typeName(t reflect.Type) string {
	switch {
	case t == durationType:
		return "duration"
	case t == timeType:
		return "time (RFC 3339)"
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "bool"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.String {
			return "list of strings"
		}
		if isSection(t.Elem()) {
			return "list of objects"
		}
		return "list of " + typeName(t.Elem())
	case reflect.Map:
		return "map of " + typeName(t.Key()) + " to " + typeName(t.Elem())
	case reflect.Struct:
		return "object"
	case reflect.Pointer:
		return typeName(t.Elem())
	}
	return t.String()
}

// EnvForm says how the environment writes the setting's value.
func (s Setting) EnvForm() string {
	switch {
	case s.typ.Kind() == reflect.Slice && s.typ.Elem().Kind() == reflect.String:
		return "comma-separated"
	case isJSONInEnv(s.typ):
		return "JSON"
	}
	return ""
}

// isJSONInEnv reports whether the environment writes t as JSON (which the
// YAML decoder reads, keys and all).
func isJSONInEnv(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Map, reflect.Struct, reflect.Pointer, reflect.Interface:
		return t != timeType
	case reflect.Slice:
		return t.Elem().Kind() != reflect.String
	}
	return false
}

// Format writes the setting's value in c as the environment (and the
// reference) writes it: durations as "90d", lists comma-separated, maps and
// lists of objects as JSON.
func (s Setting) Format(c Config) string {
	v := s.value(&c)
	switch {
	case s.typ == durationType:
		return Duration(v.Int()).String()
	case s.typ.Kind() == reflect.Slice && s.typ.Elem().Kind() == reflect.String:
		return strings.Join(v.Interface().([]string), ",")
	case isJSONInEnv(s.typ):
		if v.IsZero() || (v.Kind() == reflect.Slice || v.Kind() == reflect.Map) && v.Len() == 0 {
			return ""
		}
		return flowJSON(v.Interface())
	}
	return fmt.Sprint(v.Interface())
}

// flowJSON writes v as JSON through its YAML tags, so that the keys are
// the YAML keys the environment's JSON is read with.
func flowJSON(v any) string {
	var n yaml.Node
	var generic any
	if err := n.Encode(v); err != nil {
		return fmt.Sprint(v)
	}
	if err := n.Decode(&generic); err != nil {
		return fmt.Sprint(v)
	}
	out, err := json.Marshal(generic)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(out)
}
