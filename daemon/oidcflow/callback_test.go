package oidcflow

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// The callback against stubs of the IdP (stub_test.go): verifyCallback
// refuses what does not verify before anything is issued, issueSession
// issues what did.

// Attack: a token response whose ID token does not verify (forged, or
// signed by someone else) ends the login: 400, counted, no session.
func TestCallbackRejectsForgedIDToken(t *testing.T) {
	e := newStubEnv(t, nil)
	e.p.exchanger = exchangerFunc(func(_ context.Context, code string) (*oauth2.Token, error) {
		if code != "code-1" {
			t.Errorf("exchanged code %q, want the callback's", code)
		}
		return tokenResponse("eyJhbGciOiJub25lIn0.eyJzdWIiOiJtYWxsb3J5In0."), nil
	})
	verified := 0
	e.p.verifier = verifierFunc(func(_ context.Context, raw string) (*oidc.IDToken, error) {
		verified++
		return nil, errors.New("oidc: failed to verify signature")
	})
	cookies, state, _ := e.startLogin(t)
	resp := e.callback(t, cookies, state, "code-1")
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("status %d, want 400", resp.StatusCode)
	}
	if verified != 1 || e.metrics.failure(ReasonIDToken) != 1 || e.metrics.logins != 0 {
		t.Errorf("verified %d times, id_token failures %d, logins %d; want 1, 1, 0", verified, e.metrics.failure(ReasonIDToken), e.metrics.logins)
	}
	if s := e.sessions(t); len(s) != 0 || sessionCookie(resp, DefaultCookieName) != nil {
		t.Errorf("a forged ID token got a session: %d stored, cookie %v", len(s), sessionCookie(resp, DefaultCookieName))
	}
}

// Every other answer that does not verify is refused with its own status
// and reason, and issues nothing.
func TestCallbackRefusesAnswersThatDoNotVerify(t *testing.T) {
	tests := []struct {
		name       string
		opts       func(o *Options)
		answer     func(t *testing.T, nonce string) (*oauth2.Token, error)
		wantStatus int
		wantReason string
	}{
		{
			name: "the IdP refuses the code",
			answer: func(*testing.T, string) (*oauth2.Token, error) {
				return nil, &oauth2.RetrieveError{Response: &http.Response{StatusCode: http.StatusBadRequest}, ErrorCode: "invalid_grant"}
			},
			wantStatus: http.StatusBadRequest, wantReason: ReasonExchange,
		},
		{
			name:       "token endpoint unreachable",
			answer:     func(*testing.T, string) (*oauth2.Token, error) { return nil, errors.New("connection refused") },
			wantStatus: http.StatusBadGateway, wantReason: ReasonExchange,
		},
		{
			name:       "no id_token (openid scope missing at the IdP)",
			answer:     func(*testing.T, string) (*oauth2.Token, error) { return tokenResponse(""), nil },
			wantStatus: http.StatusBadGateway, wantReason: ReasonIDToken,
		},
		{
			name: "ID token of another login (nonce)",
			answer: func(t *testing.T, _ string) (*oauth2.Token, error) {
				return tokenResponse(idToken(t, "alice", "someone-elses-nonce", nil)), nil
			},
			wantStatus: http.StatusBadRequest, wantReason: ReasonNonce,
		},
		{
			name: "ID token signed with another key",
			answer: func(t *testing.T, nonce string) (*oauth2.Token, error) {
				c := map[string]any{"iss": stubIssuer, "aud": "edgepass", "sub": "alice", "nonce": nonce, "exp": 4102444800}
				return tokenResponse(signRS256(t, otherKey(t), "k1", c)), nil
			},
			wantStatus: http.StatusBadRequest, wantReason: ReasonIDToken,
		},
		{
			name: "ID token without sub",
			answer: func(t *testing.T, nonce string) (*oauth2.Token, error) {
				return tokenResponse(idToken(t, "", nonce, nil)), nil
			},
			wantStatus: http.StatusBadRequest, wantReason: ReasonIDToken,
		},
		{
			name: "in none of the required groups",
			opts: func(o *Options) { o.RequiredGroups = []string{"staff"} },
			answer: func(t *testing.T, nonce string) (*oauth2.Token, error) {
				return tokenResponse(idToken(t, "alice", nonce, map[string]any{"groups": []string{"dev"}})), nil
			},
			wantStatus: http.StatusForbidden, wantReason: ReasonForbidden,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newStubEnv(t, tc.opts)
			cookies, state, nonce := e.startLogin(t)
			e.p.exchanger = exchangerFunc(func(context.Context, string) (*oauth2.Token, error) { return tc.answer(t, nonce) })
			resp := e.callback(t, cookies, state, "code-1")
			if resp.StatusCode != tc.wantStatus || e.metrics.failure(tc.wantReason) != 1 {
				t.Errorf("status %d, %s failures %d; want %d, 1", resp.StatusCode, tc.wantReason, e.metrics.failure(tc.wantReason), tc.wantStatus)
			}
			if s := e.sessions(t); len(s) != 0 || sessionCookie(resp, DefaultCookieName) != nil || e.metrics.logins != 0 {
				t.Errorf("refused login issued a session: %d stored, cookie %v, logins %d", len(s), sessionCookie(resp, DefaultCookieName), e.metrics.logins)
			}
		})
	}
}

// An answer that verifies becomes a session: the stub's ID token (checked
// by go-oidc against the stub's key, no IdP server) maps to the user, and
// the browser goes back to where it was going.
func TestCallbackWithStubIdPIssuesTheSession(t *testing.T) {
	e := newStubEnv(t, nil)
	cookies, state, nonce := e.startLogin(t)
	rawID := idToken(t, "alice", nonce, map[string]any{"preferred_username": "alice", "email": "alice@example.com", "groups": []string{"dev", "ops"}})
	e.p.exchanger = exchangerFunc(func(context.Context, string) (*oauth2.Token, error) { return tokenResponse(rawID), nil })
	resp := e.callback(t, cookies, state, "code-1")
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "https://app.example.com/wiki" {
		t.Fatalf("status %d, Location %q; want 302 to the return URL", resp.StatusCode, resp.Header.Get("Location"))
	}
	all := e.sessions(t)
	if len(all) != 1 {
		t.Fatalf("%d sessions stored, want 1", len(all))
	}
	s := all[0]
	if s.Subject != "alice" || s.Username != "alice" || s.Email != "alice@example.com" || !slices.Equal(s.Groups, []string{"dev", "ops"}) ||
		s.RefreshToken != "refresh-2" || s.IDToken != rawID {
		t.Errorf("session %+v", s)
	}
	ck := sessionCookie(resp, DefaultCookieName)
	if ck == nil {
		t.Fatal("no session cookie")
	}
	if c, err := decodeFake(ck.Value); err != nil || c.Sid != s.ID {
		t.Errorf("cookie names session %v (%v), want %s", c, err, s.ID)
	}
}

// failingOverrides cannot read administrators' group overrides.
type failingOverrides struct{}

func (failingOverrides) GroupsOverride(context.Context, string) ([]string, bool, error) {
	return nil, false, errors.New("nats down")
}

// issueSession on its own: what a verified login becomes, and what stops
// it from becoming a session.
func TestIssueSession(t *testing.T) {
	big := teamGroups("team", 400) // more than one cookie holds
	tests := []struct {
		name       string
		opts       func(o *Options)
		setup      func(e *stubEnv)
		groups     []string
		returnTo   string
		wantStatus int
		wantReason string   // a failure: nothing stored, no cookie
		wantGroups []string // in the stored session
		wantFact   bool     // the groups went to the edges as a groups fact
	}{
		{name: "back to the return URL", groups: []string{"dev"}, returnTo: "https://app.example.com/wiki",
			wantStatus: http.StatusFound, wantGroups: []string{"dev"}},
		{name: "no return URL: a signed-in page", groups: []string{"dev"},
			wantStatus: http.StatusOK, wantGroups: []string{"dev"}},
		{name: "an administrator's override wins over the IdP's groups", groups: []string{"dev"}, returnTo: "https://app.example.com/",
			opts:       func(o *Options) { o.Groups = fakeOverrides{"alice": {"admins"}} },
			wantStatus: http.StatusFound, wantGroups: []string{"admins"}},
		{name: "override unreadable: the IdP's groups", groups: []string{"dev"}, returnTo: "https://app.example.com/",
			opts:       func(o *Options) { o.Groups = failingOverrides{} },
			wantStatus: http.StatusFound, wantGroups: []string{"dev"}},
		{name: "groups over a cookie reach the edges as a groups fact", groups: big, returnTo: "https://app.example.com/",
			wantStatus: http.StatusFound, wantGroups: big, wantFact: true},
		{name: "groups fact cannot be published: nothing issued", groups: big, returnTo: "https://app.example.com/",
			setup:      func(e *stubEnv) { e.edge.fail = true },
			wantStatus: http.StatusInternalServerError, wantReason: ReasonGroups},
		{name: "groups over a cookie with the override unreadable: nothing issued", groups: big, returnTo: "https://app.example.com/",
			opts:       func(o *Options) { o.Groups = failingOverrides{} },
			wantStatus: http.StatusInternalServerError, wantReason: ReasonGroups},
		{name: "session store down: nothing issued", groups: []string{"dev"}, returnTo: "https://app.example.com/",
			setup:      func(e *stubEnv) { e.store.Fail = errors.New("store down") },
			wantStatus: http.StatusInternalServerError, wantReason: ReasonSession},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newStubEnv(t, tc.opts)
			if tc.setup != nil {
				tc.setup(e)
			}
			v := &verifiedLogin{
				id:           &identity{Subject: "alice", Username: "alice", Email: "alice@example.com", Groups: tc.groups, hasGroups: true},
				refreshToken: "refresh-1",
				idToken:      "raw-id-token",
			}
			rec := httptest.NewRecorder()
			e.h.issueSession(rec, httptest.NewRequest(http.MethodGet, "https://auth.example.com/callback", nil), v, tc.returnTo)
			resp := rec.Result()
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.wantStatus)
			}
			ck := sessionCookie(resp, DefaultCookieName)
			if tc.wantReason != "" {
				e.store.Fail = nil
				if e.metrics.failure(tc.wantReason) != 1 || ck != nil || len(e.sessions(t)) != 0 || e.metrics.logins != 0 {
					t.Errorf("%s failures %d, cookie %v, %d stored, logins %d; want 1, none, 0, 0",
						tc.wantReason, e.metrics.failure(tc.wantReason), ck, len(e.sessions(t)), e.metrics.logins)
				}
				return
			}
			if loc := resp.Header.Get("Location"); loc != tc.returnTo {
				t.Errorf("Location %q, want %q", loc, tc.returnTo)
			}
			all := e.sessions(t)
			if len(all) != 1 || ck == nil || e.metrics.logins != 1 {
				t.Fatalf("%d stored, cookie %v, logins %d; want 1, set, 1", len(all), ck, e.metrics.logins)
			}
			s := all[0]
			if s.Subject != "alice" || s.RefreshToken != "refresh-1" || s.IDToken != "raw-id-token" || !slices.Equal(s.Groups, tc.wantGroups) ||
				s.ExpiresAt.Sub(s.IssuedAt) != e.h.opts.Lifetime {
				t.Errorf("stored session: sub %q, tokens %q %q, %d groups (want %d), lifetime %s",
					s.Subject, s.RefreshToken, s.IDToken, len(s.Groups), len(tc.wantGroups), s.ExpiresAt.Sub(s.IssuedAt))
			}
			c, err := decodeFake(ck.Value)
			if err != nil || c.Sid != s.ID {
				t.Fatalf("cookie %q names session %v (%v), want %s", ck.Value, c, err, s.ID)
			}
			fact, published := e.edge.groups["alice"]
			if published != tc.wantFact || tc.wantFact && !slices.Equal(fact, tc.wantGroups) {
				t.Errorf("groups fact published %v (%d groups), want %v", published, len(fact), tc.wantFact)
			}
			if tc.wantFact && len(c.Groups) >= len(tc.wantGroups) {
				t.Errorf("token carries %d groups, want fewer than %d (the rest in the fact)", len(c.Groups), len(tc.wantGroups))
			}
			if !strings.Contains(resp.Header.Get("Cache-Control"), "no-store") {
				t.Error("response may be cached")
			}
		})
	}
}
