package console

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/edgepass/edgepass/daemon/events"
	"github.com/edgepass/edgepass/daemon/session"
)

// shownToken is the service token on the page answering the create form.
func shownToken(t *testing.T, body string) string {
	t.Helper()
	_, rest, ok := strings.Cut(body, `<textarea id="new-token"`)
	if !ok {
		t.Fatalf("no token on the page:\n%s", body)
	}
	_, rest, _ = strings.Cut(rest, ">")
	raw, _, _ := strings.Cut(rest, "</textarea>")
	if strings.Count(raw, ".") != 2 || strings.ContainsAny(raw, " \n<>&") {
		t.Fatalf("the page shows %q, want a token", raw)
	}
	return raw
}

// createToken creates a service token through the console's form and
// returns the page's answer and the token it shows.
func createToken(t *testing.T, b *browser, name string) (answer, string) {
	t.Helper()
	a := b.post(t, tokensPath+"/create", url.Values{"csrf": {b.csrf(t)}, "name": {name}, "groups": {"billing, ops"},
		"audiences": {"billing-api"}, "expiresIn": {"30m"}, "reason": {"nightly sync"}})
	if a.status != http.StatusOK {
		t.Fatalf("create %s: %d\n%s", name, a.status, a.body)
	}
	return a, shownToken(t, a.body)
}

// rowOf is the row of the service tokens page whose data-token is id.
func rowOf(t *testing.T, page, id string) string {
	t.Helper()
	i := strings.Index(page, `data-token="`+id+`"`)
	if i < 0 {
		t.Fatalf("no row for token %s:\n%s", id, page)
	}
	row, _, _ := strings.Cut(page[i:], "</tr>")
	return row
}

// serviceRecord is the stored record of the service token named name.
func serviceRecord(f *fixture, name string) (session.Session, bool) {
	for _, s := range f.store.All() {
		if s.Kind == session.KindService && s.Username == name {
			return s, true
		}
	}
	return session.Session{}, false
}

// TestConsoleServiceTokenIsShownOnce: an administrator creates a service
// token in the console; the answer shows it once, uncached, with a clear
// warning; no other page, no URL, no log line and no event ever holds it.
func TestConsoleServiceTokenIsShownOnce(t *testing.T) {
	f := newFixture(t)
	b := adminBrowser(t, f)
	list := b.get(t, tokensPath)
	if list.status != 200 || !strings.Contains(list.body, `<a href="/console/service-tokens" aria-current="page">Service tokens</a>`) ||
		!strings.Contains(list.body, `id="create-token"`) || !strings.Contains(list.body, "No service token.") {
		t.Fatalf("service tokens page: %d\n%s", list.status, list.body)
	}
	if !strings.Contains(b.get(t, Prefix).body, `<a href="/console/service-tokens">Service tokens</a>`) {
		t.Error("the navigation does not link the service tokens page")
	}

	a, raw := createToken(t, b, "billing-sync")
	if a.header.Get("Content-Security-Policy") != CSP || strings.Contains(a.body, "<script>") || strings.Contains(a.body, " onclick=") {
		t.Errorf("the created page: CSP %q, or inline script", a.header.Get("Content-Security-Policy"))
	}
	if a.header.Get("Location") != "" || a.header.Get("Cache-Control") != "no-store" {
		t.Errorf("create answered Location %q, Cache-Control %q; want the page itself, no-store", a.header.Get("Location"), a.header.Get("Cache-Control"))
	}
	if !strings.Contains(a.body, "Copy it now; it will not be shown again.") || strings.Count(a.body, raw) != 1 {
		t.Errorf("the created page must show the token exactly once with the warning:\n%s", a.body)
	}
	rec, ok := serviceRecord(f, "billing-sync")
	if !ok || strings.Join(rec.Groups, ",") != "billing,ops" || strings.Join(rec.Audiences, ",") != "billing-api" || rec.ExpiresAt.Sub(rec.IssuedAt).Minutes() != 30 {
		t.Fatalf("stored record %+v", rec)
	}
	if !strings.Contains(a.body, rec.ID) || !strings.Contains(a.body, "service:billing-sync") {
		t.Errorf("the created page lacks the token's id or user")
	}

	// The list shows it, with who created it, and never the token.
	list = b.get(t, tokensPath)
	row := rowOf(t, list.body, rec.ID)
	for _, want := range []string{"billing-sync", "billing, ops", "billing-api", "alice (admin)", "<td>no</td>", `href="/console/service-tokens/revoke?id=` + rec.ID + `"`} {
		if !strings.Contains(row, want) {
			t.Errorf("list row lacks %q: %s", want, row)
		}
	}
	for _, p := range []string{tokensPath, tokensPath + "/revoke?id=" + rec.ID, Prefix, Prefix + "users", Prefix + "user?sub=service:billing-sync",
		Prefix + "session?sid=" + rec.ID, Prefix + "events", Prefix + "events?kind=service_token_created", Prefix + "events.json?after=0"} {
		if a := b.get(t, p); a.status != 200 || strings.Contains(a.body, raw) || strings.Contains(a.body, raw[strings.LastIndex(raw, ".")+1:]) {
			t.Errorf("%s: %d, shows the token: %v", p, a.status, strings.Contains(a.body, raw))
		}
	}

	// One event, by alice in the console, with the token's scope and never the token.
	ev := f.audit.All()
	e := ev[len(ev)-1]
	if e.Kind != events.KindServiceTokenCreated || e.Actor != "alice" || e.ActorType != events.ActorAdmin || e.Source != events.SourceConsole ||
		e.Reason != "nightly sync" || e.User != "billing-sync" || e.SessionID != session.Short(rec.ID) ||
		!strings.Contains(e.Detail, "audiences: billing-api") || !strings.Contains(e.Detail, "groups: billing, ops") || !strings.Contains(e.Detail, "expires ") {
		t.Errorf("recorded %+v", e)
	}
	for _, e := range ev {
		if js, _ := json.Marshal(e); strings.Contains(string(js), raw) {
			t.Errorf("an event holds the token: %s", js)
		}
	}
	if strings.Contains(f.logs.String(), raw) {
		t.Errorf("the token was logged:\n%s", f.logs.String())
	}
}

func TestConsoleServiceTokenRefusedInputIsShownWithTheForm(t *testing.T) {
	f := newFixture(t)
	b := adminBrowser(t, f)
	a := b.post(t, tokensPath+"/create", url.Values{"csrf": {b.csrf(t)}, "name": {"bad name!"}, "groups": {"ops"}, "audiences": {"billing-api"}})
	if a.status != http.StatusBadRequest || !strings.Contains(a.body, "1 to 64 letters") || !strings.Contains(a.body, `value="billing-api"`) ||
		strings.Contains(a.body, `id="new-token"`) {
		t.Fatalf("refused name: %d\n%s", a.status, a.body)
	}
	a = b.post(t, tokensPath+"/create", url.Values{"csrf": {b.csrf(t)}, "name": {"x"}, "audiences": {"billing-api"}, "expiresIn": {"48h"}})
	if a.status != http.StatusBadRequest || !strings.Contains(a.body, "at most 1h") {
		t.Fatalf("too long: %d\n%s", a.status, a.body)
	}
	if f.store.Len() != 4 || len(f.audit.All()) != 1 {
		t.Errorf("a refused create stored or recorded something")
	}
}

// TestConsoleServiceTokenRevokeNeedsConfirmationAndCSRF: the list links
// to a confirmation page; following it changes nothing; the revocation
// needs this session's CSRF token; then every edge is told, the event
// names alice, and the list shows the token as revoked.
func TestConsoleServiceTokenRevokeNeedsConfirmationAndCSRF(t *testing.T) {
	f := newFixture(t)
	b := adminBrowser(t, f)
	createToken(t, b, "report-bot")
	rec, _ := serviceRecord(f, "report-bot")
	list := b.get(t, tokensPath).body
	if strings.Contains(list, `action="/console/service-tokens/revoke"`) {
		t.Error("the list must link to the confirmation, not post the revocation")
	}
	conf := b.get(t, tokensPath+"/revoke?id="+rec.ID)
	if conf.status != 200 || !strings.Contains(conf.body, `id="confirm"`) || !strings.Contains(conf.body, `name="csrf"`) ||
		!strings.Contains(conf.body, `name="id" value="`+rec.ID+`"`) || !strings.Contains(conf.body, "Audiences: billing-api") {
		t.Fatalf("confirmation page: %d\n%s", conf.status, conf.body)
	}
	if a := b.get(t, tokensPath+"/revoke?id="+strings.Repeat("z", 43)); a.status != http.StatusNotFound {
		t.Errorf("confirmation for an unknown id: %d", a.status)
	}
	if f.edge.count() != 0 || !f.store.Has(rec.ID) {
		t.Fatal("a confirmation page revoked the token")
	}
	// Attack: a forged form (no token, a guessed one) from the console's own origin.
	for _, tok := range []string{"", "guessed"} {
		if a := b.post(t, tokensPath+"/revoke", url.Values{"id": {rec.ID}, "csrf": {tok}}); a.status != http.StatusForbidden {
			t.Errorf("revoke with csrf %q: %d, want 403", tok, a.status)
		}
	}
	if f.edge.count() != 0 || !f.store.Has(rec.ID) {
		t.Fatal("a revocation without the CSRF token went through")
	}
	a := b.post(t, tokensPath+"/revoke", url.Values{"id": {rec.ID}, "csrf": {b.csrf(t)}, "reason": {"replaced"}})
	if a.status != http.StatusSeeOther || a.header.Get("Location") != tokensPath+"?done=tokenrevoked" {
		t.Fatalf("revoke: %d to %q\n%s", a.status, a.header.Get("Location"), a.body)
	}
	if f.store.Has(rec.ID) || strings.Join(f.edge.calls, ";") != "session "+rec.ID {
		t.Fatalf("after revoking: stored %v, edge calls %v", f.store.Has(rec.ID), f.edge.calls)
	}
	ev := f.audit.All()
	e := ev[len(ev)-1]
	if e.Kind != events.KindServiceTokenRevoked || e.Actor != "alice" || e.ActorType != events.ActorAdmin || e.Source != events.SourceConsole ||
		e.Reason != "replaced" || e.User != "report-bot" || !strings.Contains(e.Detail, "audiences: billing-api") {
		t.Errorf("recorded %+v", e)
	}
	list = b.get(t, tokensPath+"?done=tokenrevoked").body
	row := rowOf(t, list, session.Short(rec.ID))
	if !strings.Contains(list, "The service token was revoked") || !strings.Contains(row, "report-bot") || !strings.Contains(row, "yes, ") ||
		!strings.Contains(row, "by alice") || !strings.Contains(row, "replaced") || !strings.Contains(row, "alice (admin)") {
		t.Errorf("revoked row: %s", row)
	}
	if a := b.post(t, tokensPath+"/revoke", url.Values{"id": {rec.ID}, "csrf": {b.csrf(t)}}); a.status != http.StatusNotFound {
		t.Errorf("second revoke: %d", a.status)
	}
}

// TestConsoleRejectsCrossSiteServiceTokenCreate: another site makes the
// administrator's browser post the create form, hoping to mint a token
// (and the answer's token would not be readable to it anyway); refused,
// nothing is stored or recorded.
func TestConsoleRejectsCrossSiteServiceTokenCreate(t *testing.T) {
	f := newFixture(t)
	b := adminBrowser(t, f)
	tok := b.csrf(t)
	form := url.Values{"csrf": {tok}, "name": {"evil"}, "audiences": {"billing-api"}, "groups": {"admins"}}
	for _, h := range []map[string]string{
		{"Origin": "https://evil.example"}, {"Origin": "http://127.0.0.1:1"}, {"Origin": "null"},
		{"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"}, nil,
	} {
		if a := b.do(t, "POST", tokensPath+"/create", form, h); a.status != http.StatusForbidden || strings.Contains(a.body, `id="new-token"`) {
			t.Errorf("create with %v: %d, want 403", h, a.status)
		}
	}
	if _, ok := serviceRecord(f, "evil"); ok || len(f.audit.All()) != 1 {
		t.Fatal("a cross-site create minted a token")
	}
}

// TestConsoleRejectsCrossSiteServiceTokenRevoke: another site makes the
// administrator's browser post the revocation (denial of service on a
// script's credential); refused, the token lives on.
func TestConsoleRejectsCrossSiteServiceTokenRevoke(t *testing.T) {
	f := newFixture(t)
	b := adminBrowser(t, f)
	createToken(t, b, "keeper")
	rec, _ := serviceRecord(f, "keeper")
	form := url.Values{"csrf": {b.csrf(t)}, "id": {rec.ID}}
	for _, h := range []map[string]string{{"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}, nil} {
		if a := b.do(t, "POST", tokensPath+"/revoke", form, h); a.status != http.StatusForbidden {
			t.Errorf("revoke with %v: %d, want 403", h, a.status)
		}
	}
	if !f.store.Has(rec.ID) || f.edge.count() != 0 {
		t.Fatal("a cross-site revoke ended the token")
	}
}

// TestConsoleServiceTokensNeedAnAdministrator: a non-administrator (or
// nobody) cannot see, create or revoke service tokens; an administrator
// whose override dropped the admin group neither.
func TestConsoleServiceTokensNeedAnAdministrator(t *testing.T) {
	f := newFixture(t)
	anon := f.browser()
	if a := anon.get(t, tokensPath); a.status != http.StatusFound || !strings.HasPrefix(a.header.Get("Location"), Prefix+"signin") {
		t.Errorf("anonymous list: %d %q", a.status, a.header.Get("Location"))
	}
	form := url.Values{"csrf": {"x"}, "name": {"anon"}, "audiences": {"billing-api"}}
	if a := anon.post(t, tokensPath+"/create", form); a.status != http.StatusForbidden {
		t.Errorf("anonymous create: %d", a.status)
	}
	admin := adminBrowser(t, f)
	tok := admin.csrf(t)
	f.auth.person.Groups = []string{"staff"}
	bob := f.browser()
	if a := bob.signIn(t); a.status != http.StatusForbidden {
		t.Fatalf("non-admin sign-in: %d", a.status)
	}
	if a := bob.post(t, tokensPath+"/create", form); a.status != http.StatusForbidden {
		t.Errorf("non-admin create: %d", a.status)
	}
	f.standing.mu.Lock()
	f.standing.over, f.standing.groups = true, []string{"staff"}
	f.standing.mu.Unlock()
	form.Set("csrf", tok)
	if a := admin.post(t, tokensPath+"/create", form); a.status != http.StatusForbidden || strings.Contains(a.body, `id="new-token"`) {
		t.Errorf("demoted administrator create: %d", a.status)
	}
	if a := admin.get(t, tokensPath); a.status != http.StatusForbidden && a.status != http.StatusFound || strings.Contains(a.body, "create-token") {
		t.Errorf("demoted administrator list: %d", a.status)
	}
	if _, ok := serviceRecord(f, "anon"); ok {
		t.Fatal("a token was minted without an administrator")
	}
}
