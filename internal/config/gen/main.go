// Command gen writes docs/config.md, the configuration reference, from the
// config tree (internal/config) and its doc comments:
//
//	go generate ./internal/config
//
// A test fails when docs/config.md differs from what it writes.
package main

import (
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"strings"

	"github.com/keyrot/keyrot/internal/config"
)

func main() {
	out := flag.String("o", "docs/config.md", "the file to write")
	src := flag.String("src", ".", "the config package's source directory")
	flag.Parse()
	ref, err := reference(*src)
	if err == nil {
		err = os.WriteFile(*out, ref, 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

// reference is the reference for the config package in dir.
func reference(dir string) ([]byte, error) {
	docs, err := fieldDocs(dir)
	if err != nil {
		return nil, err
	}
	return config.Reference(docs), nil
}

// fieldDocs reads the doc comments of the struct types in the Go package in
// dir, keyed "Type" and "Type.Field", each joined into one line.
func fieldDocs(dir string) (map[string]string, error) {
	fset := token.NewFileSet()
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", dir, err)
	}
	docs := map[string]string{}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, dir+"/"+name, nil, parser.ParseComments)
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", name, err)
		}
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.TYPE {
				continue
			}
			for _, spec := range gd.Specs {
				ts := spec.(*ast.TypeSpec)
				st, ok := ts.Type.(*ast.StructType)
				if !ok {
					continue
				}
				doc := ts.Doc
				if doc == nil {
					doc = gd.Doc
				}
				docs[ts.Name.Name] = oneLine(doc)
				for _, field := range st.Fields.List {
					text := oneLine(field.Doc)
					if text == "" {
						text = oneLine(field.Comment)
					}
					for _, n := range field.Names {
						docs[ts.Name.Name+"."+n.Name] = text
					}
				}
			}
		}
	}
	return docs, nil
}

func oneLine(g *ast.CommentGroup) string {
	return strings.Join(strings.Fields(g.Text()), " ")
}
