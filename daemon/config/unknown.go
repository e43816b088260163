package config

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/edgepass/edgepass/plugin/suggest"
)

// unknownHint turns paerser's "field not found, node: isuer" into a message
// that names the setting and the closest valid ones ("unknown setting
// \"isuer\"; did you mean oidc.issuer?"); other errors pass through.
func unknownHint(err error) error {
	if err == nil {
		return nil
	}
	const marker = "field not found, node: "
	msg := err.Error()
	i := strings.Index(msg, marker)
	if i < 0 {
		return err
	}
	node := msg[i+len(marker):]
	if j := strings.IndexAny(node, " ;,\n"); j >= 0 {
		node = node[:j]
	}
	hint := fmt.Sprintf("unknown setting %q", node)
	if near := closestSettings(node); len(near) > 0 {
		hint += "; did you mean " + strings.Join(near, " or ") + "?"
	}
	return errors.New(hint)
}

// SettingPaths lists every setting as its dotted path (oidc.issuer, …),
// from the Configuration struct itself so the list cannot drift.
func SettingPaths() []string {
	var out []string
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() || f.Name == "ConfigFile" && prefix == "" {
				continue
			}
			name := strings.ToLower(f.Name[:1]) + f.Name[1:]
			if tag, _, _ := strings.Cut(f.Tag.Get("json"), ","); tag != "" && tag != "-" {
				name = tag
			}
			if f.Type.Kind() == reflect.Struct && f.Type.PkgPath() == t.PkgPath() {
				walk(f.Type, prefix+name+".")
				continue
			}
			out = append(out, prefix+name)
		}
	}
	walk(reflect.TypeOf(Configuration{}), "")
	sort.Strings(out)
	return out
}

// closestSettings are the settings whose last part is within a small edit
// distance of node (case-insensitive), best first, at most three.
func closestSettings(node string) []string {
	type cand struct {
		path string
		d    int
	}
	var cands []cand
	n := strings.ToLower(node)
	for _, p := range SettingPaths() {
		leaf := p[strings.LastIndexByte(p, '.')+1:]
		d := suggest.Distance(n, strings.ToLower(leaf))
		if d <= 2 && d <= len(node)/2 {
			cands = append(cands, cand{p, d})
		}
	}
	sort.SliceStable(cands, func(i, j int) bool { return cands[i].d < cands[j].d })
	var out []string
	for i := 0; i < len(cands) && i < 3; i++ {
		out = append(out, cands[i].path)
	}
	return out
}
