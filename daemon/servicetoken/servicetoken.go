// Package servicetoken issues service tokens: named machine credentials
// for scripts and services calling APIs behind edgepass (admin API
// /api/v1/service-tokens, `edgepass tokens create|list|revoke`).
//
// A service token is signed with the session keys (edges verify it like a
// session, with the keys they already have) but carries its own audience,
// token.ServiceAudience, and a scope of route audiences (svc_aud): only a
// middleware with serviceTokens enabled and one of those audiences accepts
// it, and only as Authorization: Bearer. It has a session id and a stored
// record of kind "service", so it is listed with the sessions and revoked
// like one (`edgepass tokens revoke`, or `edgepass sessions revoke`): every
// edge refuses it within a second. The token is shown once, at creation;
// the daemon keeps only the record.
package servicetoken

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/edgepass/edgepass/daemon/session"
	"github.com/edgepass/edgepass/plugin/policy"
	"github.com/edgepass/edgepass/plugin/token"
)

// Limits on a request.
const (
	MaxGroups    = 100
	MaxAudiences = 32
	maxText      = 256
)

// Signer signs token claims with the current session key (*keys.Ring).
type Signer interface {
	SignClaims(c *token.Claims) (raw, kid string, err error)
}

// Store keeps the records (*session.Store).
type Store interface {
	Put(ctx context.Context, s *session.Session) error
	Get(ctx context.Context, id string) (*session.Session, uint64, error)
	List(ctx context.Context, subject string) ([]session.Session, error)
}

// Options configure a Manager.
type Options struct {
	// Issuer is the daemon's publicURL (iss).
	Issuer string
	Signer Signer
	Store  Store
	// Revoker ends a token at every edge and deletes its record.
	Revoker session.Revoker
	// MaxLifetime is the longest token lifetime edges accept now
	// (*keys.Ring's Horizon): a longer token would be refused as too long.
	MaxLifetime func() time.Duration
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Manager creates, lists and revokes service tokens.
type Manager struct{ o Options }

// New checks the options.
func New(o Options) (*Manager, error) {
	if o.Issuer == "" || o.Signer == nil || o.Store == nil || o.MaxLifetime == nil || o.Revoker.Edge == nil || o.Revoker.Store == nil {
		return nil, errors.New("servicetoken: Issuer, Signer, Store, Revoker and MaxLifetime are required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Manager{o: o}, nil
}

// CreateRequest is the body of POST /api/v1/service-tokens.
type CreateRequest struct {
	// Name names the token's user: sub "service:<name>", preferred_username
	// <name> (letters, digits, '.', '_', '-'; at most 64).
	Name string `json:"name"`
	// Groups are the token's groups, matched by allowedGroups like a user's.
	Groups []string `json:"groups"`
	// ExpiresIn is a Go duration ("12h", "90m") or seconds; empty = the
	// longest lifetime edges accept (session.lifetime).
	ExpiresIn string `json:"expiresIn,omitempty"`
	// Audiences are the route audiences (serviceTokens.audiences) that may
	// accept it; at least one.
	Audiences []string `json:"audiences"`
}

// Created is the answer of POST /api/v1/service-tokens: the token, shown
// this once, and its record.
type Created struct {
	Token     string    `json:"token"`
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Subject   string    `json:"sub"`
	Groups    []string  `json:"groups"`
	Audiences []string  `json:"audiences"`
	IssuedAt  time.Time `json:"issuedAt"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// InputError is a request the daemon refuses (HTTP 400).
type InputError struct{ Msg string }

func (e *InputError) Error() string { return e.Msg }

func inputErr(format string, args ...any) error {
	return &InputError{Msg: fmt.Sprintf(format, args...)}
}

var nameRe = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// ParseExpiresIn reads a Go duration or a number of seconds.
func ParseExpiresIn(v string) (time.Duration, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, nil
	}
	if d, err := time.ParseDuration(v); err == nil {
		return d, nil
	}
	var n int64
	if _, err := fmt.Sscanf(v, "%d", &n); err == nil && fmt.Sprint(n) == v {
		return time.Duration(n) * time.Second, nil
	}
	return 0, fmt.Errorf("expiresIn %q is not a duration like 12h or a number of seconds", v)
}

// Create issues a token.
func (m *Manager) Create(ctx context.Context, req CreateRequest) (*Created, error) {
	name := strings.TrimSpace(req.Name)
	if !nameRe.MatchString(name) {
		return nil, inputErr("name %q: 1 to 64 letters, digits, '.', '_' or '-'", req.Name)
	}
	groups, err := cleanList("groups", req.Groups, MaxGroups, false)
	if err != nil {
		return nil, err
	}
	auds, err := cleanList("audiences", req.Audiences, MaxAudiences, true)
	if err != nil {
		return nil, err
	}
	if len(auds) == 0 {
		return nil, inputErr("audiences: at least one route audience (the serviceTokens.audiences of the middlewares that may accept the token)")
	}
	max := m.o.MaxLifetime()
	life, err := ParseExpiresIn(req.ExpiresIn)
	if err != nil {
		return nil, inputErr("%v", err)
	}
	switch {
	case life == 0:
		life = max
	case life < time.Minute:
		return nil, inputErr("expiresIn %s: at least 1m", life)
	case life > max:
		// Edges refuse tokens living longer than the published maximum
		// (a leaked key must not mint long-lived tokens).
		return nil, inputErr("expiresIn %s: at most %s, the longest token lifetime edges accept (session.lifetime); create a new token before this one expires", life, max)
	}
	now := m.o.Now().Truncate(time.Second)
	s := &session.Session{
		ID: session.NewID(), Subject: token.ServiceSubjectPrefix + name, Username: name, Groups: groups,
		IssuedAt: now, ExpiresAt: now.Add(life), Kind: session.KindService, Audiences: auds,
	}
	c := &token.Claims{
		Issuer: m.o.Issuer, Audience: token.Audience{token.ServiceAudience}, Subject: s.Subject, SessionID: s.ID,
		IssuedAt: now.Unix(), Expiry: s.ExpiresAt.Unix(), PreferredUsername: name, Groups: groups, ServiceAudiences: auds,
	}
	raw, kid, err := m.o.Signer.SignClaims(c)
	if errors.Is(err, token.ErrTooLarge) {
		return nil, inputErr("the token would be larger than %d bytes: fewer groups or audiences", token.MaxTokenSize)
	}
	if err != nil {
		return nil, fmt.Errorf("servicetoken: sign: %w", err)
	}
	s.KeyID = kid
	if err := m.o.Store.Put(ctx, s); err != nil {
		return nil, fmt.Errorf("servicetoken: store: %w", err)
	}
	return &Created{Token: raw, ID: s.ID, Name: name, Subject: s.Subject, Groups: nonNil(groups), Audiences: auds, IssuedAt: s.IssuedAt, ExpiresAt: s.ExpiresAt}, nil
}

// List returns the live service tokens' records, oldest first.
func (m *Manager) List(ctx context.Context) ([]session.Session, error) {
	all, err := m.o.Store.List(ctx, "")
	if err != nil {
		return nil, err
	}
	out := []session.Session{}
	for _, s := range all {
		if s.Kind == session.KindService {
			out = append(out, s.Public())
		}
	}
	return out, nil
}

// ErrNotFound: no live service token has that id.
var ErrNotFound = errors.New("no such service token; list them with `edgepass tokens list`")

// Revoke ends the token with id at every edge and deletes its record.
func (m *Manager) Revoke(ctx context.Context, id string, kind string) (*session.Session, error) {
	if !session.ValidID(id) {
		return nil, ErrNotFound
	}
	s, _, err := m.o.Store.Get(ctx, id)
	if errors.Is(err, session.ErrNotFound) || (err == nil && s.Kind != session.KindService) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	if err := m.o.Revoker.Revoke(ctx, s.ID, s.ExpiresAt, kind); err != nil {
		return nil, err
	}
	pub := s.Public()
	return &pub, nil
}

// cleanList trims, drops empties and duplicates, and checks each entry.
func cleanList(field string, in []string, limit int, audiences bool) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, v := range policy.SplitList(in) {
		if seen[v] {
			continue
		}
		seen[v] = true
		if len(v) > maxText || policy.Sanitize(v) != v {
			return nil, inputErr("%s: %q: at most %d characters, no control characters", field, v, maxText)
		}
		if audiences && (strings.ContainsAny(v, " \t") || v == token.ServiceAudience || v == policy.DefaultAudience) {
			return nil, inputErr("audiences: %q cannot name a route", v)
		}
		out = append(out, v)
	}
	if len(out) > limit {
		return nil, inputErr("%s: at most %d", field, limit)
	}
	return out, nil
}

func nonNil(v []string) []string {
	if v == nil {
		return []string{}
	}
	return v
}
