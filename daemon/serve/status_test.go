package serve

import (
	"testing"

	"github.com/edgepass/edgepass/plugin/token"
)

// The status page names the user as X-Auth-User does: preferred_username,
// else email, else sub.
func TestStatusPageNamesUserLikeVerify(t *testing.T) {
	cases := map[string]struct {
		claims token.Claims
		want   string
	}{
		"username":           {token.Claims{Subject: "u-1", Email: "alice@example.com", PreferredUsername: "alice"}, "alice"},
		"email, no username": {token.Claims{Subject: "u-1", Email: "alice@example.com"}, "alice@example.com"},
		"subject only":       {token.Claims{Subject: "u-1"}, "u-1"},
	}
	for name, c := range cases {
		var d statusData
		d.signedIn(&c.claims)
		if !d.SignedIn || d.User != c.want {
			t.Errorf("%s: user %q (signed in %v), want %q", name, d.User, d.SignedIn, c.want)
		}
	}
}
