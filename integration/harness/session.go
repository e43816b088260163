package harness

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/edgepass/edgepass/plugin/policy"
)

// SessionCookie is the session cookie's name: the daemon's and the plugin's
// default, which the harness keeps.
const SessionCookie = policy.DefaultCookieName

// DecodeJWT decodes a compact JWS's header and payload into header and
// payload (either may be nil) without verifying the signature: the tests
// and the benchmark read what the daemon or the provider issued.
func DecodeJWT(raw string, header, payload any) error {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return fmt.Errorf("not a compact JWS: %.60q", raw)
	}
	for i, into := range []any{header, payload} {
		if into == nil {
			continue
		}
		what := [2]string{"header", "payload"}[i]
		data, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			return fmt.Errorf("JWS %s: %w", what, err)
		}
		if err := json.Unmarshal(data, into); err != nil {
			return fmt.Errorf("JWS %s: %w", what, err)
		}
	}
	return nil
}

// SignInAt signs in as user the way a browser does: it opens target (a page
// behind the plugin), fills in the provider's forms and checks that it lands
// back on target with 200 and a session cookie for target. It returns the
// browser and the session token; errors show the navigation.
func SignInAt(issuer, target, user, password string) (*Browser, string, error) {
	b := NewBrowser(issuer)
	page, shown, err := b.SignIn(target, user, password)
	if err != nil {
		return b, "", err
	}
	if !shown {
		return b, "", fmt.Errorf("the provider never asked for credentials; navigation:\n%s", page.Trace())
	}
	tok, err := b.SessionAt(page, target)
	return b, tok, err
}

// SessionAt checks that a sign-in ended on page back at target with 200 and
// returns the session cookie the browser holds for target; errors show the
// navigation.
func (b *Browser) SessionAt(page *Page, target string) (string, error) {
	if page == nil {
		return "", fmt.Errorf("did not land back on %s: no page", target)
	}
	if page.Status != http.StatusOK || page.URL.String() != target {
		return "", fmt.Errorf("did not land back on %s with 200 (got %d at %s); navigation:\n%s\nbody: %.300s", target, page.Status, page.URL, page.Trace(), page.Body)
	}
	tok := b.Cookie(target, SessionCookie)
	if tok == "" {
		return "", errors.New("no " + SessionCookie + " cookie after the callback; navigation:\n" + page.Trace())
	}
	return tok, nil
}
