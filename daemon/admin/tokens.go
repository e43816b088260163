package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/edgepass/edgepass/daemon/events"
)

// Token is a named admin API token (admin.tokens). Its name is the actor
// of every change made with it; a read-only token may only read (GET).
type Token struct {
	Name     string
	Secret   string
	ReadOnly bool
}

// LegacyTokenName is the name of Options.Token (admin.token): read-write.
const LegacyTokenName = "admin"

// SourceHeader carries the channel of an API call into the audit trail:
// the CLI sends "cli". It is only a label: the actor is always the token.
const SourceHeader = "X-Edgepass-Source"

// maxReason bounds the reason query parameter.
const maxReason = events.MaxReason

type tokenEntry struct {
	name     string
	hash     [32]byte
	readOnly bool
}

// hashTokens keeps the tokens as SHA-256 hashes, compared in constant time.
func hashTokens(legacy string, named []Token, log *slog.Logger) ([]tokenEntry, error) {
	all := append([]Token(nil), named...)
	if legacy != "" {
		all = append([]Token{{Name: LegacyTokenName, Secret: legacy}}, all...)
	}
	var out []tokenEntry
	seen := map[string]bool{}
	for _, t := range all {
		switch {
		case t.Name == "" || t.Secret == "":
			return nil, errors.New("admin: a token needs a name and a secret")
		case seen[t.Name]:
			return nil, fmt.Errorf("admin: two tokens are named %q", t.Name)
		}
		seen[t.Name] = true
		if len(t.Secret) < 16 {
			log.Warn("admin token is shorter than 16 characters; use a long random token", "token", t.Name)
		}
		out = append(out, tokenEntry{name: t.Name, hash: sha256.Sum256([]byte(t.Secret)), readOnly: t.ReadOnly})
	}
	return out, nil
}

// match returns the token whose secret is tok; every token is compared
// (hashes, so neither a prefix nor the length leaks).
func (h *Handler) match(tok string) (tokenEntry, bool) {
	got := sha256.Sum256([]byte(tok))
	var found tokenEntry
	ok := 0
	for _, t := range h.tokens {
		if subtle.ConstantTimeCompare(got[:], t.hash[:]) == 1 {
			found, ok = t, 1
		}
	}
	return found, ok == 1
}

// readMethod reports a method that changes nothing.
func readMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// authenticate requires "Authorization: Bearer <token>" naming a token of
// Options.Token or Options.Tokens, refuses changes with a read-only token,
// and puts the actor (the token's name, the source, the reason query
// parameter) into the request's context for the audit trail.
func (h *Handler) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		t, ok := h.match(tok)
		if !strings.EqualFold(scheme, "Bearer") || tok == "" || !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="edgepass-admin"`)
			writeError(w, http.StatusUnauthorized, "unauthorized: missing or wrong admin bearer token")
			return
		}
		if t.readOnly && !readMethod(r.Method) {
			h.log.Warn("admin API: read-only token refused a change", "token", t.name, "method", r.Method, "path", r.URL.Path)
			writeError(w, http.StatusForbidden, fmt.Sprintf("forbidden: token %q is read-only", t.name))
			return
		}
		source := events.SourceAPI
		if strings.EqualFold(r.Header.Get(SourceHeader), events.SourceCLI) {
			source = events.SourceCLI
		}
		a := events.Actor{Name: t.name, Type: events.ActorToken, Source: source, Reason: events.Clean(r.URL.Query().Get("reason"), maxReason)}
		next.ServeHTTP(w, r.WithContext(events.WithActor(r.Context(), a)))
	})
}

// Internal serves the /api/ routes without bearer authentication, for the
// console: it authenticates people itself and calls this with the
// administrator as the actor in the request's context. A request without
// an actor is refused, so this handler never serves anonymously.
func (h *Handler) Internal() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a, ok := events.ActorFrom(r.Context()); !ok || a.Name == "" {
			writeError(w, http.StatusUnauthorized, "unauthorized: no actor")
			return
		}
		h.api.ServeHTTP(w, r)
	})
}
