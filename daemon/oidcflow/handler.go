// Package oidcflow is the daemon's OpenID Connect relying party: browser
// login (authorization code + PKCE + state + nonce; the pending login
// sealed in the browser, so any replica completes it; a per-client rate
// limit; login-loop detection; groups that do not fit a cookie published to
// the edges as a groups fact), logout (a same-origin POST with a
// session-bound token from a confirmation page, then RP-initiated at the
// IdP), OIDC back-channel logout and periodic refresh at the IdP.
// It issues sessions through consumer interfaces (SessionStore, Signer,
// EdgePublisher) that the daemon core implements.
package oidcflow

import (
	"context"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"

	"github.com/edgepass/edgepass/daemon/internal/sameorigin"
	"github.com/edgepass/edgepass/daemon/returnurl"
)

// LoggedOutPath (under publicURL) is the post-logout redirect URI to register
// at the IdP: it is the same for every logout, as providers require.
const LoggedOutPath = "/logged-out"

// Handler serves /login, /callback, /logout and /backchannel-logout and runs
// the periodic refresh. Create it with New.
type Handler struct {
	opts      Options
	log       *slog.Logger
	returnURL *returnurl.Policy
	idp       *idp
	// include is oidc.groupsInclude; limiter the per-client rate limit
	// of /login and /callback (rateWarned: when it last logged).
	include    *groupFilter
	limiter    *rateLimiter
	rateWarned atomic.Int64
	// seenJTI remembers logout token ids (issuer + jti) for jtiMemory;
	// jtiMu makes check-and-record atomic.
	seenJTI *expirable.LRU[string, struct{}]
	jtiMu   sync.Mutex
	// omittedNoted remembers which providers' missing logout-token claims
	// were logged already (issuer + claims).
	omittedNoted sync.Map
	// cookies names the session, binding, login-state and loop cookies.
	cookies cookies
	// publicOrigin is publicURL's origin, as browsers send it in Origin.
	publicOrigin string
	// maxToken is the largest token that still fits one cookie.
	maxToken int
	now      func() time.Time
}

// New checks opts and builds the handler. It does not contact the IdP:
// discovery happens on first use and is retried until it succeeds.
func New(opts Options) (*Handler, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if !validCookieName(o.CookieName) {
		return nil, fmt.Errorf("oidcflow: session.cookieName %q is not a valid cookie name", o.CookieName)
	}
	policy, err := returnurl.New(o.AllowedDomains)
	if err != nil {
		return nil, fmt.Errorf("oidcflow: session.allowedDomains: %w", err)
	}
	pub, _ := url.Parse(o.PublicURL) // checked by withDefaults
	base := strings.TrimSuffix(pub.Path, "/")
	ck, err := newCookies(o, base)
	if err != nil {
		return nil, err
	}
	include, err := newGroupFilter(o.GroupsInclude) // checked by withDefaults
	if err != nil {
		return nil, fmt.Errorf("oidcflow: %w", err)
	}
	limiter, err := newRateLimiter(o.LoginRateLimit, o.LoginRateBurst, o.TrustedProxies)
	if err != nil {
		return nil, err
	}
	h := &Handler{
		opts:      o,
		log:       o.Logger,
		returnURL: policy,
		idp: &idp{
			issuer:      o.Issuer,
			clientID:    o.ClientID,
			secret:      o.ClientSecret,
			scopes:      o.Scopes,
			redirectURL: o.PublicURL + "/callback",
			client:      &http.Client{Timeout: idpTimeout},
			retryAfter:  discoveryRetry,
		},
		include:      include,
		limiter:      limiter,
		seenJTI:      expirable.NewLRU[string, struct{}](jtiEntries, nil, jtiMemory),
		cookies:      ck,
		publicOrigin: sameorigin.Of(pub),
		maxToken:     maxCookieBytes - len(ck.session) - 1,
		now:          time.Now,
	}
	return h, nil
}

// jtiEntries bounds the logout token ids remembered against replay.
const jtiEntries = 10000

// maxCookieBytes is what browsers keep of one cookie's name=value, and also
// the edge's token.MaxTokenSize.
const maxCookieBytes = 4096

// Register adds the browser endpoints to the daemon's public mux.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /login", h.login)
	mux.HandleFunc("GET /callback", h.callback)
	mux.HandleFunc("GET /logout", h.confirmLogout)
	mux.HandleFunc("POST /logout", h.logout)
	mux.HandleFunc("GET "+LoggedOutPath, h.loggedOut)
	mux.HandleFunc("POST /backchannel-logout", h.backchannelLogout)
}

// Ping reports whether the IdP answers now, for /readyz and the
// edgepass_idp_up metric: until discovery has succeeded once it runs
// discovery; after that it fetches the discovery document again, so an IdP
// that went away is reported down instead of fine forever.
func (h *Handler) Ping(ctx context.Context) error {
	if _, err := h.idp.get(ctx); err != nil {
		return err
	}
	return h.idp.probe(ctx)
}

// Discovered reports whether IdP discovery has succeeded once: logins can
// start from then on, and /verify, sign-out and revocation never need the
// IdP, so readiness depends on this rather than on the IdP answering now.
func (h *Handler) Discovered() bool {
	return h.idp.current() != nil
}

func validCookieName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("()<>@,;:\\\"/[]?={}", c) >= 0 {
			return false
		}
	}
	return true
}

// page is the data of the one HTML template; nothing in it comes from a
// token or an internal error.
type page struct {
	Title    string
	Message  string
	Items    []string // a list after the message
	Form     *signOutForm
	Link     string
	LinkText string
}

// signOutForm is the sign-out confirmation's form: it posts back to
// /logout with a token bound to the session (see logout.go).
type signOutForm struct {
	Action string // relative, so it posts to the origin the page came from
	CSRF   string
	RD     string // the return URL, already checked
}

var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}} · edgepass</title>
<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}h1{font-size:1.4rem}button{font:inherit;padding:.4rem .9rem}li{margin:.3rem 0}</style>
</head><body><h1>{{.Title}}</h1><p>{{.Message}}</p>
{{- if .Items}}<ul>{{range .Items}}<li>{{.}}</li>{{end}}</ul>{{end}}
{{- with .Form}}<form id="signout" method="post" action="{{.Action}}">{{if .CSRF}}<input type="hidden" name="csrf" value="{{.CSRF}}">{{end}}{{if .RD}}<input type="hidden" name="rd" value="{{.RD}}">{{end}}<button type="submit">Sign out</button></form>{{end}}
{{- if .Link}}<p><a href="{{.Link}}">{{.LinkText}}</a></p>{{end}}</body></html>
`))

// noStore marks a response as private and uncacheable; every flow response
// carries state, codes or cookies.
func noStore(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
}

// pageHeaders sets the headers of every HTML page the daemon serves: not
// cached, never framed, no scripts, no Referer (the URL may hold a code).
// formTargets are the CSP form-action sources (none: no forms); browsers
// also check the redirects after a form submission against them.
func pageHeaders(w http.ResponseWriter, formTargets []string) {
	noStore(w)
	csp := "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"
	if len(formTargets) > 0 {
		csp += "; form-action " + strings.Join(formTargets, " ")
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Content-Security-Policy", csp)
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
}

// render writes an HTML page with headers that forbid framing, scripts and
// leaking the URL (it may hold a code) through Referer.
func (h *Handler) render(w http.ResponseWriter, status int, p page) {
	h.renderWith(w, status, p, nil)
}

// renderWith is render for a page with a form posting to formTargets.
func (h *Handler) renderWith(w http.ResponseWriter, status int, p page, formTargets []string) {
	pageHeaders(w, formTargets)
	w.WriteHeader(status)
	if err := pageTemplate.Execute(w, p); err != nil {
		h.log.Debug("write page", "err", err)
	}
}

// startOver is the link on error pages: back to where the user can retry.
func (h *Handler) startOver() (string, string) {
	if h.opts.DefaultRedirect != "" {
		return h.opts.DefaultRedirect, "Start again"
	}
	return "", ""
}

// fail ends a login attempt with an error page and counts it.
func (h *Handler) fail(w http.ResponseWriter, status int, reason, title, msg string) {
	h.opts.Metrics.LoginFailed(reason)
	link, text := h.startOver()
	h.render(w, status, page{Title: title, Message: msg, Link: link, LinkText: text})
}
