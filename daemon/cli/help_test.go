package cli

import (
	"regexp"
	"strings"
	"testing"

	"github.com/edgepass/edgepass/daemon/verify"
	"github.com/edgepass/edgepass/plugin/policy"
)

// `edgepass <command> --help` prints that command's usage, not the list of
// every command.
func TestPerCommandHelp(t *testing.T) {
	cases := []struct {
		args      []string
		want      []string
		notWanted string
	}{
		{[]string{"users", "revoke", "--help"}, []string{"Usage: edgepass users revoke <user>", "sub:<sub>", "--sub"}, "keys rotate"},
		{[]string{"help", "users", "revoke"}, []string{"Usage: edgepass users revoke <user>"}, "keys rotate"},
		{[]string{"sessions", "list", "-h"}, []string{"Usage: edgepass sessions list", "--user"}, "keys rotate"},
		{[]string{"keys", "revoke", "--help"}, []string{"Usage: edgepass keys revoke <kid>"}, "sessions list"},
		{[]string{"groups", "set", "--help"}, []string{"Usage: edgepass groups set <user> <g1,g2>"}, "keys rotate"},
		{[]string{"forwardauth-regex", "--help"}, []string{"Usage: edgepass forwardauth-regex", "--userHeader"}, "sessions list"},
		{[]string{"sessions", "--help"}, []string{"sessions list", "sessions show", "sessions revoke"}, "keys rotate"},
	}
	for _, c := range cases {
		r := run(nil, c.args...)
		if r.code != ExitOK {
			t.Errorf("%q: exit %d %q", c.args, r.code, r.stderr)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(r.stdout, w) {
				t.Errorf("%q: help lacks %q:\n%s", c.args, w, r.stdout)
			}
		}
		if strings.Contains(r.stdout, c.notWanted) {
			t.Errorf("%q: printed the generic help (mentions %q):\n%s", c.args, c.notWanted, r.stdout)
		}
	}
}

// forwardauth-regex prints the authResponseHeadersRegex a Traefik
// ForwardAuth middleware needs for /verify with the same header settings.
func TestForwardAuthRegex(t *testing.T) {
	defaults, err := policy.Compile(policy.Rules{UserHeader: verify.HeaderUser, EmailHeader: verify.HeaderEmail,
		GroupsHeader: verify.HeaderGroups, NameHeader: verify.HeaderName})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		args    []string
		code    int
		want    string
		matches []string
		misses  []string
	}{
		{"defaults as /verify", nil, ExitOK, defaults.ForwardAuthRegex(), []string{"X-Auth-User", "x_auth_groups", "X-Auth-Name", "Remote-User"}, []string{"X-Request-Id"}},
		{"own headers", []string{"--userHeader=X-User", "--groupsHeader", "X-Groups", "--stripHeaders=X-Internal-*"}, ExitOK, "",
			[]string{"X-User", "x-groups", "X-Internal-Token", "X-Forwarded-User"}, []string{"X-Auth-User", "X-Email"}},
		{"bad header", []string{"--userHeader=Cookie"}, ExitUsage, "", nil, nil},
		{"stray argument", []string{"extra"}, ExitUsage, "", nil, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := run(nil, append([]string{"forwardauth-regex"}, c.args...)...)
			if r.code != c.code {
				t.Fatalf("exit %d, want %d: %+v", r.code, c.code, r)
			}
			if c.code != ExitOK {
				if r.stderr == "" {
					t.Error("no message")
				}
				return
			}
			got := strings.TrimSpace(r.stdout)
			if c.want != "" && got != c.want {
				t.Errorf("regex %q, want %q", got, c.want)
			}
			re, err := regexp.Compile(got)
			if err != nil {
				t.Fatalf("output %q is not a regexp: %v", got, err)
			}
			for _, h := range c.matches {
				if !re.MatchString(h) {
					t.Errorf("%q does not match %s", got, h)
				}
			}
			for _, h := range c.misses {
				if re.MatchString(h) {
					t.Errorf("%q matches %s", got, h)
				}
			}
		})
	}
	if !IsCommand("forwardauth-regex") {
		t.Error("IsCommand(forwardauth-regex) is false")
	}
}
