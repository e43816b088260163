package oidcflow

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/edgepass/edgepass/daemon/events"
)

// TestFlowRecordsWhoEndedEachSession: sign-in and sign-out name the user,
// back-channel logout and refresh name the IdP, each with its source.
func TestFlowRecordsWhoEndedEachSession(t *testing.T) {
	audit := &events.Memory{}
	e := newEnv(t, func(o *Options) { o.Events = audit })
	c, _ := e.loggedIn(t)
	e.signOut(t, c, "")

	e.loggedIn(t) // idp-sid-1
	if code := postLogoutToken(t, e, e.idp.logoutToken(func(c map[string]any) { c["sid"] = "idp-sid-1" })); code != http.StatusOK {
		t.Fatalf("back-channel logout: %d", code)
	}
	e.loggedIn(t)
	if code := postLogoutToken(t, e, e.idp.logoutToken(func(c map[string]any) { delete(c, "sid") })); code != http.StatusOK {
		t.Fatalf("back-channel logout of the user: %d", code)
	}
	e.loggedIn(t)
	e.idp.set(func(p *testIdP) { p.refreshFails = true })
	if err := e.h.RefreshOnce(context.Background()); err != nil {
		t.Fatal(err)
	}

	var got []string
	for _, ev := range audit.All() {
		got = append(got, strings.Join([]string{ev.Kind, ev.Actor, ev.ActorType, ev.Source, ev.User}, " "))
		if ev.Kind != events.KindUserRevoked && len(ev.SessionID) != 8 {
			t.Errorf("%s without a short session id: %q", ev.Kind, ev.SessionID)
		}
	}
	idp := e.idp.issuer()
	want := []string{
		"session_created alice user user alice",
		"session_revoked alice user user alice",
		"session_created alice user user alice",
		"session_revoked " + idp + " idp backchannel alice",
		"session_created alice user user alice",
		"session_revoked " + idp + " idp backchannel alice",
		"user_revoked " + idp + " idp backchannel alice",
		"session_created alice user user alice",
		"session_revoked " + idp + " idp refresh alice",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if r := audit.All()[len(want)-1].Reason; !strings.Contains(r, "refused the refresh token") {
		t.Errorf("refresh revocation reason %q", r)
	}
}

// TestSignInForTheConsoleLeavesEdgeSessionsAlone: the console's sign-in
// uses the IdP with its own redirect URI and no offline_access, returns
// the person with mapped groups, and creates no edge session or cookie.
func TestSignInForTheConsoleLeavesEdgeSessionsAlone(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	redirect := "https://admin.example.com/console/callback"
	authURL, st, err := e.h.StartSignIn(ctx, redirect)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(authURL)
	q := u.Query()
	if q.Get("redirect_uri") != redirect || strings.Contains(q.Get("scope"), "offline_access") || q.Get("state") != st.State ||
		q.Get("nonce") != st.Nonce || q.Get("code_challenge_method") != "S256" {
		t.Fatalf("authorize URL %s", authURL)
	}
	c := browser(t)
	resp := get(t, c, authURL)
	back, _ := url.Parse(resp.Header.Get("Location"))

	// Another sign-in's state (a callback link from someone else) is refused.
	if _, err := e.h.FinishSignIn(ctx, redirect, back.Query(), SignIn{State: "other", Nonce: st.Nonce, Verifier: st.Verifier}); !errors.Is(err, ErrSignInState) {
		t.Fatalf("foreign state: %v", err)
	}
	p, err := e.h.FinishSignIn(ctx, redirect, back.Query(), st)
	if err != nil {
		t.Fatal(err)
	}
	if p.Subject != "user-1" || p.Username != "alice" || !slices.Equal(p.Groups, []string{"staff", "admins"}) {
		t.Errorf("person %+v", p)
	}
	if len(e.store.All()) != 0 || len(e.edge.revokedSIDs()) != 0 {
		t.Error("the console's sign-in touched edge sessions")
	}
	// The code is spent: the same callback again fails.
	if _, err := e.h.FinishSignIn(ctx, redirect, back.Query(), st); !errors.Is(err, ErrSignInInvalid) {
		t.Errorf("replayed code: %v", err)
	}
	// An IdP refusal is reported as such.
	if _, err := e.h.FinishSignIn(ctx, redirect, url.Values{"state": {st.State}, "error": {"access_denied"}}, st); !errors.Is(err, ErrSignInRefused) {
		t.Errorf("IdP error: %v", err)
	}
}
