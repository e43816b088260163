// Package oidcflow is the daemon's OpenID Connect relying party: browser
// login (authorization code + PKCE + state + nonce), logout (local and
// RP-initiated), OIDC back-channel logout and periodic refresh at the IdP.
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
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"

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
	pending   *expirable.LRU[string, pendingLogin]
	// seenJTI remembers logout token ids (issuer + jti) for jtiMemory;
	// jtiMu makes check-and-record atomic.
	seenJTI *expirable.LRU[string, struct{}]
	jtiMu   sync.Mutex
	// callbackPath is the path part of the redirect URI, where the login
	// binding cookie is sent.
	callbackPath string
	// maxToken is the largest token that still fits one cookie.
	maxToken int
	now      func() time.Time
}

// pendingLogin is what /login remembers for /callback, keyed by state.
type pendingLogin struct {
	nonce    string
	verifier string // PKCE code verifier
	binding  string // value of the browser's login binding cookie
	returnTo string // already checked against the allowed domains
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
		pending:      expirable.NewLRU[string, pendingLogin](o.PendingLogins, nil, PendingTTL),
		seenJTI:      expirable.NewLRU[string, struct{}](o.PendingLogins, nil, jtiMemory),
		callbackPath: strings.TrimSuffix(pub.Path, "/") + "/callback",
		maxToken:     maxCookieBytes - len(o.CookieName) - 1,
		now:          time.Now,
	}
	return h, nil
}

// maxCookieBytes is what browsers keep of one cookie's name=value, and also
// the edge's token.MaxTokenSize.
const maxCookieBytes = 4096

// Register adds the browser endpoints to the daemon's public mux.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /login", h.login)
	mux.HandleFunc("GET /callback", h.callback)
	mux.HandleFunc("GET /logout", h.logout)
	mux.HandleFunc("POST /logout", h.logout)
	mux.HandleFunc("GET "+LoggedOutPath, h.loggedOut)
	mux.HandleFunc("POST /backchannel-logout", h.backchannelLogout)
}

// Ping reports whether IdP discovery succeeded (or succeeds now); the admin
// listener's /readyz uses it.
func (h *Handler) Ping(ctx context.Context) error {
	_, err := h.idp.get(ctx)
	return err
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
	Link     string
	LinkText string
}

var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}} · edgepass</title>
<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}h1{font-size:1.4rem}</style>
</head><body><h1>{{.Title}}</h1><p>{{.Message}}</p>{{if .Link}}<p><a href="{{.Link}}">{{.LinkText}}</a></p>{{end}}</body></html>
`))

// noStore marks a response as private and uncacheable; every flow response
// carries state, codes or cookies.
func noStore(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
}

// PageHeaders sets the headers of every HTML page the daemon serves: not
// cached, never framed, no scripts, no Referer (the URL may hold a code).
// forms lets the page post forms to its own origin (the status page's sign-out).
func PageHeaders(w http.ResponseWriter, forms bool) {
	noStore(w)
	csp := "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"
	if forms {
		csp += "; form-action 'self'"
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
	PageHeaders(w, false)
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
