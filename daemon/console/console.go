// Package console is the administrators' web console: users and their
// sessions, group overrides, edges, keys, service tokens and the audit
// trail, served by the
// daemon under /console/ (server-rendered with html/template, one small
// script for the live event log, every action a plain form).
//
// People sign in at the IdP (package oidcflow's SignIn, a callback of its
// own) and must be in one of Options.Groups; everyone else gets 403 and no
// cookie. The console then acts through the admin API's handlers
// (admin.Handler.Internal) with the administrator as the actor, so every
// change lands in the audit trail under their name with source "console".
//
// Defenses: a sealed, HttpOnly, SameSite=Lax session cookie scoped to
// /console/; every POST needs the session's CSRF token and an Origin (or
// Sec-Fetch-Site: same-origin) of the console itself; CSP without inline
// script (script-src 'self'), frame-ancestors 'none' and X-Frame-Options
// DENY; bulk actions (end all of a user's sessions, rotate or revoke a key)
// go through a confirmation page, and so does revoking a service token.
// Pages never show tokens, refresh tokens or key material: the admin API
// never returns them, with one exception: a new service token is shown
// once, on the answer to the form that created it (no-store; never in a
// URL, a log line or an event).
package console

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/edgepass/edgepass/daemon/events"
	"github.com/edgepass/edgepass/daemon/internal/sameorigin"
	"github.com/edgepass/edgepass/daemon/oidcflow"
)

// Prefix is where the console lives on a listener.
const Prefix = "/console/"

// CallbackPath is the console's redirect URI path: register
// <BaseURL>/console/callback at the IdP.
const CallbackPath = Prefix + "callback"

// Authenticator signs people in at the IdP; *oidcflow.Handler implements it.
type Authenticator interface {
	StartSignIn(ctx context.Context, redirectURL string) (string, oidcflow.SignIn, error)
	FinishSignIn(ctx context.Context, redirectURL string, q url.Values, st oidcflow.SignIn) (*oidcflow.Person, error)
}

// Sealer encrypts and authenticates small values bound to a purpose;
// *seal.Key implements it (every replica shares it, so any replica opens
// a console cookie another sealed).
type Sealer interface {
	Seal(plaintext []byte, aad string) string
	Open(sealed, aad string) ([]byte, error)
}

// Standing reports what the edges hold about a person since iat: a user
// revocation covering that time (revoked) and a group override in force
// (groups, overridden). An administrator whose sessions were revoked, or
// whose override drops the admin group, loses the console at once.
type Standing interface {
	Standing(sub string, iat time.Time) (revoked bool, groups []string, overridden bool)
}

// Overrides reports the administrators' group override in force for a
// person (*edgepub.Publisher implements it): at sign-in it wins over the
// IdP's groups, as it does for an edge login.
type Overrides interface {
	GroupsOverride(ctx context.Context, subject string) (groups []string, ok bool, err error)
}

// Options configures the console.
type Options struct {
	// BaseURL is the origin browsers reach this listener at (admin.console.url,
	// or publicURL); the console is BaseURL + "/console/".
	BaseURL string
	// Groups may use the console (admin.console.groups); required.
	Groups []string
	// SessionLifetime bounds a console sign-in (default 8h).
	SessionLifetime time.Duration
	// SignIn, API and Seal are required: the IdP sign-in, the admin API
	// handlers (admin.Handler.Internal) and the cookie sealing key.
	SignIn Authenticator
	API    http.Handler
	Seal   Sealer
	// Standing and Overrides are optional (see their types).
	Standing  Standing
	Overrides Overrides
	// IdP names the identity provider on session pages (oidc.issuer).
	IdP string
	// Audit records sign-ins, refusals and sign-outs (changes are recorded
	// by the admin API); nil records nothing.
	Audit  events.Recorder
	Logger *slog.Logger
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// DefaultSessionLifetime is Options.SessionLifetime's default.
const DefaultSessionLifetime = 8 * time.Hour

// Handler serves /console/.
type Handler struct {
	o        Options
	log      *slog.Logger
	origin   string // BaseURL's origin, as browsers send it in Origin
	secure   bool   // BaseURL is https: Secure cookies with the __Secure- prefix
	cookie   string // session cookie name
	signin   string // pending sign-in cookie name
	mux      *http.ServeMux
	pages    map[string]*template.Template
	now      func() time.Time
	callback string
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// New checks o and builds the console.
func New(o Options) (*Handler, error) {
	var errs []error
	u, err := url.Parse(strings.TrimRight(o.BaseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.Trim(u.Path, "/") != "" {
		errs = append(errs, fmt.Errorf("base URL %q: want scheme://host[:port]", o.BaseURL))
	}
	if len(o.Groups) == 0 {
		errs = append(errs, errors.New("no administrator groups (admin.console.groups)"))
	}
	if o.SignIn == nil || o.API == nil || o.Seal == nil {
		errs = append(errs, errors.New("Options.SignIn, API and Seal are required"))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("console: %w", errors.Join(errs...))
	}
	if o.SessionLifetime <= 0 {
		o.SessionLifetime = DefaultSessionLifetime
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Audit == nil {
		o.Audit = events.Discard
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	h := &Handler{
		o: o, log: o.Logger, origin: sameorigin.Of(u), secure: u.Scheme == "https",
		pages: pages, now: o.Now, callback: strings.TrimRight(o.BaseURL, "/") + CallbackPath,
		cookie: "edgepass_console", signin: "edgepass_console_signin",
	}
	if h.secure {
		h.cookie, h.signin = "__Secure-"+h.cookie, "__Secure-"+h.signin
	}
	h.mux = h.routes()
	return h, nil
}

// ServeHTTP serves the console; mount it at Prefix.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	securityHeaders(w)
	h.mux.ServeHTTP(w, r)
}

func (h *Handler) routes() *http.ServeMux {
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET "+Prefix+"static/", http.StripPrefix(Prefix+"static/", staticFiles(http.FileServerFS(static))))
	mux.HandleFunc("GET "+Prefix+"signin", h.startSignIn)
	mux.HandleFunc("GET "+CallbackPath, h.finishSignIn)
	mux.HandleFunc("GET "+Prefix+"signed-out", h.signedOut)
	mux.HandleFunc("POST "+Prefix+"signout", h.post(h.signOut))

	mux.HandleFunc("GET "+Prefix+"{$}", h.page(h.overview))
	mux.HandleFunc("GET "+Prefix+"users", h.page(h.users))
	mux.HandleFunc("GET "+Prefix+"user", h.page(h.user))
	mux.HandleFunc("GET "+Prefix+"session", h.page(h.sessionDetail))
	mux.HandleFunc("POST "+Prefix+"session/end", h.post(h.endSession))
	mux.HandleFunc("GET "+Prefix+"user/end", h.page(h.confirmEndUser))
	mux.HandleFunc("POST "+Prefix+"user/end", h.post(h.endUser))
	mux.HandleFunc("GET "+Prefix+"groups", h.page(h.groups))
	mux.HandleFunc("POST "+Prefix+"groups/set", h.post(h.setGroups))
	mux.HandleFunc("POST "+Prefix+"groups/clear", h.post(h.clearGroups))
	mux.HandleFunc("GET "+Prefix+"edges", h.page(h.edges))
	mux.HandleFunc("GET "+Prefix+"keys", h.page(h.keys))
	mux.HandleFunc("GET "+Prefix+"keys/rotate", h.page(h.confirmRotate))
	mux.HandleFunc("POST "+Prefix+"keys/rotate", h.post(h.rotate))
	mux.HandleFunc("GET "+Prefix+"keys/revoke", h.page(h.confirmRevokeKey))
	mux.HandleFunc("POST "+Prefix+"keys/revoke", h.post(h.revokeKey))
	mux.HandleFunc("GET "+tokensPath, h.page(h.serviceTokens))
	mux.HandleFunc("POST "+tokensPath+"/create", h.post(h.createServiceToken))
	mux.HandleFunc("GET "+tokensPath+"/revoke", h.page(h.confirmRevokeToken))
	mux.HandleFunc("POST "+tokensPath+"/revoke", h.post(h.revokeServiceToken))
	mux.HandleFunc("GET "+Prefix+"events", h.page(h.eventLog))
	mux.HandleFunc("GET "+Prefix+"events.json", h.eventsJSON)
	mux.HandleFunc(Prefix, h.notFound)
	return mux
}

// CSP is the console's Content-Security-Policy: scripts and styles only
// from the console's own files (no inline script, no eval), no frames,
// forms only to itself.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// securityHeaders are on every console answer.
func securityHeaders(w http.ResponseWriter) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", CSP)
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("X-Content-Type-Options", "nosniff")
	// same-origin, not no-referrer: under no-referrer browsers send
	// "Origin: null" with the console's own form posts.
	hd.Set("Referrer-Policy", "same-origin")
	hd.Set("Cross-Origin-Opener-Policy", "same-origin")
	hd.Set("Cross-Origin-Resource-Policy", "same-origin")
	hd.Set("Cache-Control", "no-store")
}

// staticFiles lets the embedded CSS and JS be cached briefly.
func staticFiles(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "private, max-age=300")
		next.ServeHTTP(w, r)
	})
}

// isAdmin reports whether groups hold one of the console's groups.
func (h *Handler) isAdmin(groups []string) bool {
	for _, g := range h.o.Groups {
		if slices.Contains(groups, g) {
			return true
		}
	}
	return false
}

func (h *Handler) notFound(w http.ResponseWriter, r *http.Request) {
	h.render(w, r, http.StatusNotFound, nil, "message", view{Title: "Not found", Message: "There is no such console page."})
}
