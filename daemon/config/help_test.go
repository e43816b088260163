package config

import (
	"strings"
	"testing"

	"github.com/traefik/paerser/flag"
)

// TestHelpListsExactlyTheSettings keeps `edgepass serve --help` in step with
// the configuration: every setting paerser accepts is listed once (but
// admin.url, which serve ignores), and nothing else.
func TestHelpListsExactlyTheSettings(t *testing.T) {
	var b strings.Builder
	if err := WriteHelp(&b); err != nil {
		t.Fatal(err)
	}
	help := b.String()
	listed := map[string]bool{}
	for _, line := range strings.Split(help, "\n") {
		if rest, ok := strings.CutPrefix(line, "  --"); ok {
			name, _, _ := strings.Cut(rest, "=")
			listed[strings.ToLower(name)] = true
		}
	}
	flats, err := flag.Encode(New())
	if err != nil {
		t.Fatal(err)
	}
	accepted := map[string]bool{}
	for _, f := range flats {
		if isGroup(f.Name) {
			continue // a group such as --oidc, not a setting
		}
		accepted[f.Name] = true
	}
	for name := range accepted {
		if !listed[name] && name != "admin.url" {
			t.Errorf("setting --%s is missing from the help", name)
		}
	}
	for name := range listed {
		if !accepted[name] {
			t.Errorf("help lists --%s, which is not a setting", name)
		}
	}
	for _, want := range []string{"--session.lifetime=12h", "--keys.rotationInterval=0", "(EDGEPASS_ADMIN_TOKENFILE)", "Required: --oidc.issuer"} {
		if !strings.Contains(help, want) {
			t.Errorf("help lacks %q", want)
		}
	}
}

func isGroup(name string) bool {
	switch name {
	case "oidc", "session", "keys", "nats", "nats.embedded", "admin", "admin.console", "events", "log":
		return true
	}
	return false
}
