package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/internal/suggest"
)

// MaxFileSize bounds the config file: a real one is a few kilobytes, and a
// huge one must fail at once rather than take seconds and gigabytes.
const MaxFileSize = 1 << 20

// fileField names the file itself in errors about its whole.
const fileField = "config file"

// Sources says where each setting's value came from, by Setting.Path:
// "file PATH", "env NAME" or "flag --NAME"; a setting missing from it has
// its default.
type Sources map[string]string

// Of is the source of the setting at path: "default" when it was not set.
func (s Sources) Of(path string) string {
	if src, ok := s[path]; ok {
		return src
	}
	return "default"
}

// Set reports whether the setting at path was set by a file, the
// environment or a flag.
func (s Sources) Set(path string) bool { _, ok := s[path]; return ok }

// Parse reads a YAML config over the defaults. Every problem is reported
// at once (Errors): unknown keys (with the key probably meant), values of
// the wrong type, a second document, a file over MaxFileSize.
func Parse(r io.Reader) (Config, error) {
	cfg := Default()
	var errs Errors
	parseInto(r, "", &cfg, Sources{}, &errs)
	return cfg, errs.err()
}

// Read is the defaults, then the file at path (if not empty), then the
// environment, with where each value came from; it reports every problem
// of reading, and does not validate (Validate does).
func Read(path string, open func(string) (io.ReadCloser, error), lookup func(string) (string, bool)) (Config, Sources, error) {
	cfg, src := Default(), Sources{}
	var errs Errors
	if path != "" {
		f, err := open(path)
		if err != nil {
			return cfg, src, &Error{Field: fileField, Value: path, Reason: err.Error()}
		}
		parseInto(f, path, &cfg, src, &errs)
		f.Close()
	}
	errs.addErr("", cfg.applyEnv(lookup, src))
	return cfg, src, errs.err()
}

// Load reads the file at path (if not empty) over the defaults, applies the
// environment and validates for a command that needs the given parts:
// every problem, at once.
func Load(path string, open func(string) (io.ReadCloser, error), lookup func(string) (string, bool), needs ...Need) (Config, error) {
	cfg, _, err := Read(path, open, lookup)
	var errs Errors
	errs.addErr("", err)
	for _, e := range errs {
		if e.Field == fileField {
			// The file as a whole is unreadable: checking the defaults
			// in its place would only add noise.
			return cfg, errs
		}
	}
	errs.addErr("", cfg.Validate(needs...))
	return cfg, errs.err()
}

// FromEnv is the defaults with the environment applied, validated for what
// the caller needs: a Lambda's whole configuration. Sources says which
// settings the environment set.
func FromEnv(lookup func(string) (string, bool), needs ...Need) (Config, Sources, error) {
	cfg, src := Default(), Sources{}
	var errs Errors
	errs.addErr("", cfg.applyEnv(lookup, src))
	errs.addErr("", cfg.Validate(needs...))
	return cfg, src, errs.err()
}

// ApplyEnv overrides c with the environment variables lookup finds.
func (c *Config) ApplyEnv(lookup func(string) (string, bool)) error {
	return c.applyEnv(lookup, Sources{})
}

// applyEnv sets every setting one of whose variables is set: the derived
// name first, then the aliases. An empty value leaves the setting alone,
// except for a secret, where it is the value.
func (c *Config) applyEnv(lookup func(string) (string, bool), src Sources) error {
	var errs Errors
	for _, s := range Settings() {
		for _, name := range s.Env {
			v, ok := lookup(name)
			if !ok || (v == "" && !s.Secret) {
				continue
			}
			if err := s.setFromEnv(c, v); err != nil {
				shown := v
				if s.Secret || s.Hidden {
					shown = ""
				}
				errs.add(name, shown, err.Error())
			} else {
				src[s.Path] = "env " + name
			}
			break
		}
	}
	return errs.err()
}

// setFromEnv parses v as the setting's type: scalars as written, lists of
// strings comma-separated, anything else JSON.
func (s Setting) setFromEnv(c *Config, v string) error {
	dst := s.value(c)
	switch {
	case s.typ == durationType:
		d, err := keyrot.ParseDuration(v)
		if err != nil {
			return err
		}
		dst.SetInt(int64(d))
		return nil
	case s.typ.Kind() == reflect.Slice && s.typ.Elem().Kind() == reflect.String:
		var out []string
		for _, item := range strings.Split(v, ",") {
			if item = strings.TrimSpace(item); item != "" {
				out = append(out, item)
			}
		}
		dst.Set(reflect.ValueOf(out).Convert(s.typ))
		return nil
	case isJSONInEnv(s.typ) || s.typ == timeType:
		var n yaml.Node
		if err := yaml.Unmarshal([]byte(v), &n); err != nil {
			return fmt.Errorf("want %s as JSON: %w", s.Type(), err)
		}
		if len(n.Content) == 0 {
			return fmt.Errorf("want %s as JSON", s.Type())
		}
		var errs Errors
		decodeValue(n.Content[0], s.typ, dst, s.Path, &errs)
		if len(errs) > 0 {
			return errors.New(strings.TrimPrefix(errs[0].Error(), "config: "))
		}
		return nil
	}
	switch s.typ.Kind() {
	case reflect.String:
		dst.SetString(v)
	case reflect.Bool:
		b, err := strconv.ParseBool(v)
		if err != nil {
			return errors.New("want true or false")
		}
		dst.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		i, err := strconv.ParseInt(strings.TrimSpace(v), 10, s.typ.Bits())
		if err != nil {
			return errors.New("want an integer")
		}
		dst.SetInt(i)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		i, err := strconv.ParseUint(strings.TrimSpace(v), 10, s.typ.Bits())
		if err != nil {
			return errors.New("want a whole number")
		}
		dst.SetUint(i)
	case reflect.Float32, reflect.Float64:
		f, err := strconv.ParseFloat(strings.TrimSpace(v), s.typ.Bits())
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return errors.New("want a finite number")
		}
		dst.SetFloat(f)
	default:
		return fmt.Errorf("cannot be set from the environment (%s)", s.typ)
	}
	return nil
}

// parseInto decodes one YAML document from r into cfg, recording in src
// the settings it sets and in errs every problem.
func parseInto(r io.Reader, path string, cfg *Config, src Sources, errs *Errors) {
	data, err := io.ReadAll(io.LimitReader(r, MaxFileSize+1))
	if err != nil {
		errs.add(fileField, path, err.Error())
		return
	}
	if len(data) > MaxFileSize {
		errs.add(fileField, path, fmt.Sprintf("larger than %d KiB: a keyrot config is a few kilobytes", MaxFileSize>>10))
		return
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if !errors.Is(err, io.EOF) {
			errs.add(fileField, path, strings.TrimPrefix(err.Error(), "yaml: "))
		}
		return
	}
	var second yaml.Node
	switch err := dec.Decode(&second); {
	case errors.Is(err, io.EOF):
	case err != nil:
		errs.add(fileField, path, "after the first YAML document: "+strings.TrimPrefix(err.Error(), "yaml: "))
	default:
		errs.add(fileField, path, fmt.Sprintf("a second YAML document starts at line %d: keyrot reads one (remove the --- or split the file)", second.Line))
	}
	if len(doc.Content) == 0 {
		return
	}
	root := resolve(doc.Content[0])
	if isNull(root) {
		return
	}
	if root.Kind != yaml.MappingNode {
		errs.add(fileField, path, fmt.Sprintf("line %d: want a mapping of sections (users:, rotation:, ...)", root.Line))
		return
	}
	leaves := map[string]Setting{}
	for _, s := range Settings() {
		if s.YAML {
			leaves[s.Path] = s
		}
	}
	from := "file " + path
	if path == "" {
		from = "file"
	}
	walkNode(root, reflect.TypeOf(Config{}), "", func(s Setting, n *yaml.Node) {
		before := len(*errs)
		decodeValue(n, s.typ, s.value(cfg), s.Path, errs)
		if len(*errs) == before {
			src[s.Path] = from
		}
	}, leaves, errs)
}

// walkNode goes through a mapping of settings of struct type t at prefix,
// calling leaf for each setting it holds and reporting unknown keys.
func walkNode(n *yaml.Node, t reflect.Type, prefix string, leaf func(Setting, *yaml.Node), leaves map[string]Setting, errs *Errors) {
	fields := sectionFields(t)
	for _, kv := range mappingPairs(n) {
		key, val := kv[0].Value, resolve(kv[1])
		f, ok := fields[key]
		if !ok {
			if env := envOnly(t, key); env != "" {
				errs.add(prefix+key, "", fmt.Sprintf("line %d: read from the environment only (%s), never from the file", kv[0].Line, env))
				continue
			}
			errs.add(prefix+key, "", fmt.Sprintf("unknown key (line %d)%s", kv[0].Line, suggest.Hint(key, slices.Sorted(maps.Keys(fields)))))
			continue
		}
		path := prefix + key
		if isSection(f.Type) {
			switch {
			case isNull(val):
			case val.Kind != yaml.MappingNode:
				errs.add(path, scalarValue(val), fmt.Sprintf("want a mapping of settings (line %d)", val.Line))
			default:
				walkNode(val, f.Type, path+".", leaf, leaves, errs)
			}
			continue
		}
		if s, ok := leaves[path]; ok {
			leaf(s, val)
		}
	}
}

// envOnly is the variable of t's environment-only field (yaml:"-") that
// key names ("password" for Password), or "".
func envOnly(t reflect.Type, key string) string {
	for i := range t.NumField() {
		f := t.Field(i)
		env := f.Tag.Get("env")
		if name, _ := yamlName(f); name == "-" && env != "" && strings.EqualFold(f.Name, strings.ReplaceAll(key, "_", "")) {
			return strings.Split(env, ",")[0]
		}
	}
	return ""
}

// sectionFields are a struct's settings by YAML key (inlined structs'
// fields included; fields read from the environment only left out).
func sectionFields(t reflect.Type) map[string]reflect.StructField {
	out := map[string]reflect.StructField{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, inline := yamlName(f)
		if inline && isSection(f.Type) {
			maps.Copy(out, sectionFields(f.Type))
			continue
		}
		if name != "-" {
			out[name] = f
		}
	}
	return out
}

// decodeValue decodes n into dst of type t, reporting at path unknown keys
// in objects (with the key probably meant), wrong types, and numbers that
// are not finite. dst is left alone when n has a problem.
func decodeValue(n *yaml.Node, t reflect.Type, dst reflect.Value, path string, errs *Errors) {
	n = resolve(n)
	before := len(*errs)
	checkKeys(n, t, path, errs)
	if len(*errs) > before {
		return
	}
	tmp := reflect.New(t)
	tmp.Elem().Set(dst)
	if err := n.Decode(tmp.Interface()); err != nil {
		errs.add(path, scalarValue(n), decodeReason(err, t, n))
		return
	}
	if bad := nonFinite(tmp.Elem()); bad {
		errs.add(path, scalarValue(n), "want a finite number, not NaN or infinity")
		return
	}
	dst.Set(tmp.Elem())
}

// checkKeys reports the keys of objects in n that type t has no field for,
// recursing through lists, maps and nested objects.
func checkKeys(n *yaml.Node, t reflect.Type, path string, errs *Errors) {
	n = resolve(n)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case isNull(n):
	case t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
		for i, item := range n.Content {
			checkKeys(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i), errs)
		}
	case t.Kind() == reflect.Map && n.Kind == yaml.MappingNode:
		for _, kv := range mappingPairs(n) {
			checkKeys(kv[1], t.Elem(), path+"."+kv[0].Value, errs)
		}
	case isSection(t) && n.Kind == yaml.MappingNode:
		fields := sectionFields(t)
		for _, kv := range mappingPairs(n) {
			key := kv[0].Value
			f, ok := fields[key]
			if !ok {
				errs.add(path+"."+key, "", fmt.Sprintf("unknown key (line %d)%s", kv[0].Line, suggest.Hint(key, slices.Sorted(maps.Keys(fields)))))
				continue
			}
			checkKeys(kv[1], f.Type, path+"."+key, errs)
		}
	}
}

// nonFinite reports whether v holds a NaN or an infinity anywhere.
func nonFinite(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Float32, reflect.Float64:
		f := v.Float()
		return math.IsNaN(f) || math.IsInf(f, 0)
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			if nonFinite(v.Index(i)) {
				return true
			}
		}
	case reflect.Map:
		for it := v.MapRange(); it.Next(); {
			if nonFinite(it.Value()) {
				return true
			}
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() && nonFinite(v.Field(i)) {
				return true
			}
		}
	case reflect.Pointer, reflect.Interface:
		return !v.IsNil() && nonFinite(v.Elem())
	}
	return false
}

// decodeReason is a decoding error in words, with the line.
func decodeReason(err error, t reflect.Type, n *yaml.Node) string {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("want %s (line %d)", article(typeName(t)), n.Line)
	}
	return fmt.Sprintf("%s (line %d)", strings.TrimPrefix(err.Error(), "yaml: "), n.Line)
}

// article puts "a" or "an" before a type's name.
func article(s string) string {
	switch {
	case strings.HasPrefix(s, "list") || strings.HasPrefix(s, "map"):
		return "a " + s
	case strings.IndexByte("aeiou", s[0]) >= 0:
		return "an " + s
	}
	return "a " + s
}

// mappingPairs are a mapping's key and value nodes, with merge keys (<<)
// expanded in place.
func mappingPairs(n *yaml.Node) [][2]*yaml.Node {
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		return nil
	}
	var out [][2]*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Tag == "!!merge" || (k.Value == "<<" && k.Style == 0) {
			v = resolve(v)
			if v.Kind == yaml.SequenceNode {
				for _, m := range v.Content {
					out = append(out, mappingPairs(m)...)
				}
			} else {
				out = append(out, mappingPairs(v)...)
			}
			continue
		}
		out = append(out, [2]*yaml.Node{k, v})
	}
	return out
}

// resolve follows an alias to the node it names.
func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

// scalarValue is n's text if it is a scalar, for error messages.
func scalarValue(n *yaml.Node) string {
	if n != nil && n.Kind == yaml.ScalarNode {
		return n.Value
	}
	return ""
}

// Set sets the setting at path (YAML path, or an environment-only
// setting's variable) from a command-line flag, written as the environment
// writes it, and records flag as its source.
func (c *Config) Set(src Sources, path, value, flag string) error {
	s, ok := Lookup(path)
	if !ok {
		var paths []string
		for _, s := range Settings() {
			paths = append(paths, s.Path)
		}
		return &Error{Field: flag, Value: path, Reason: "no such setting" + suggest.Hint(path, paths)}
	}
	if err := s.setFromEnv(c, value); err != nil {
		shown := value
		if s.Secret {
			shown = ""
		}
		return &Error{Field: flag + " " + s.Path, Value: shown, Reason: err.Error()}
	}
	src[s.Path] = "flag " + flag
	return nil
}
