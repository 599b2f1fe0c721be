package config

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
)

//go:generate go run ./gen -o ../../docs/config.md

// Reference is docs/config.md: every setting's YAML path, environment
// variables, type, default and doc, by section. docs holds the doc comments
// of the config's types ("Users") and fields ("Users.Names"), which the
// generator (internal/config/gen) reads from this package's source.
func Reference(docs map[string]string) []byte {
	var b bytes.Buffer
	b.WriteString(`# Configuration reference

<!-- Generated from internal/config by ` + "`go generate ./internal/config`" + `: do not edit by hand. -->

Every setting has a default. A YAML file (` + "`--config F`" + `) sets them over the defaults,
environment variables over the file, and a command's flags over both. The environment
variable of a setting is ` + "`KEYROT_`" + ` and its YAML path in capitals with ` + "`_`" + ` for ` + "`.`" + `
(` + "`notify.quiet_period`" + ` is ` + "`KEYROT_NOTIFY_QUIET_PERIOD`" + `); older names still work and are
listed after it. In the environment, durations are written ` + "`90d`" + `, ` + "`12h`" + `, ` + "`30s`" + `; lists of
strings are comma-separated; maps and lists of objects are JSON with the YAML keys, e.g.
` + "`KEYROT_NOTIFY_RECIPIENTS='{\"key_created\":[\"owner\"]}'`" + `. So the Lambda, configured by
the environment only, can set everything. Secrets are read from the environment only and
never printed.

` + "`keyrot validate --config F`" + ` reports every problem at once and exits 2;
` + "`keyrot config --config F`" + ` prints the effective value of every setting and where it came
from (` + "`--set PATH=VALUE`" + ` tries a value as a flag), and ` + "`keyrot config --env`" + ` prints it as
environment variables.
`)
	def := Default()
	section := "\x00"
	for _, s := range Settings() {
		if s.Section != section {
			section = s.Section
			if section == "" {
				b.WriteString("\n## Top level\n\n")
			} else {
				fmt.Fprintf(&b, "\n## %s\n\n", section)
				if doc := docs[sectionType(section)]; doc != "" {
					b.WriteString(doc + "\n\n")
				}
			}
			b.WriteString("| Setting | Environment | Type | Default | Description |\n|---|---|---|---|---|\n")
		}
		key := "`" + s.Path + "`"
		if !s.YAML {
			key = "(environment only)"
		}
		env := make([]string, len(s.Env))
		for i, e := range s.Env {
			env[i] = "`" + e + "`"
		}
		typ := s.Type()
		if form := s.EnvForm(); form != "" {
			typ += " (" + form + " in the environment)"
		}
		if s.Secret {
			typ += ", secret"
		}
		dflt := s.Format(def)
		if dflt != "" && !s.Secret {
			dflt = "`" + dflt + "`"
		} else {
			dflt = ""
		}
		doc := plain(s.Field, docs[s.Owner+"."+s.Field])
		if item := itemType(s.typ); item != nil {
			doc += " " + itemDoc(item, docs)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", key, strings.Join(env, ", "), typ, dflt, cell(doc))
	}
	return b.Bytes()
}

// sectionType is the Go type name of the top-level section with YAML key name.
func sectionType(name string) string {
	t := reflect.TypeOf(Config{})
	for i := range t.NumField() {
		if n, _ := yamlName(t.Field(i)); n == name {
			return t.Field(i).Type.Name()
		}
	}
	return ""
}

// itemType is the object type of a list or map of objects, or nil.
func itemType(t reflect.Type) reflect.Type {
	if t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
		if e := t.Elem(); isSection(e) {
			return e
		}
	}
	return nil
}

// itemDoc lists an object's keys with their docs.
func itemDoc(t reflect.Type, docs map[string]string) string {
	var parts []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _ := yamlName(f)
		if !f.IsExported() || name == "-" {
			continue
		}
		p := "`" + name + "` (" + typeName(f.Type) + ")"
		if d := strings.TrimSuffix(plain(f.Name, docs[t.Name()+"."+f.Name]), "."); d != "" {
			p += ": " + strings.ToLower(d[:1]) + d[1:]
		}
		parts = append(parts, p)
	}
	return "Each has " + strings.Join(parts, "; ") + "."
}

// plain drops the Go name a doc comment starts with: "RotateEvery is the
// age..." reads "The age..." in the reference.
func plain(field, doc string) string {
	for _, verb := range []string{" is ", " are "} {
		if rest, ok := strings.CutPrefix(doc, field+verb); ok && rest != "" {
			return strings.ToUpper(rest[:1]) + rest[1:]
		}
	}
	if rest, ok := strings.CutPrefix(doc, field+" "); ok && rest != "" {
		return strings.ToUpper(rest[:1]) + rest[1:]
	}
	return doc
}

// cell makes text safe in a Markdown table cell.
func cell(s string) string {
	return strings.TrimSpace(strings.ReplaceAll(strings.ReplaceAll(s, "|", `\|`), "\n", " "))
}
