package oidcflow

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/edgepass/edgepass/daemon/events"
	"github.com/edgepass/edgepass/daemon/session"
	"golang.org/x/oauth2"
)

// RunRefresh re-checks sessions at the IdP every RefreshInterval until ctx
// ends (it returns at once when the interval is 0). Run it in one goroutine.
func (h *Handler) RunRefresh(ctx context.Context) {
	if h.opts.RefreshInterval <= 0 {
		return
	}
	t := time.NewTicker(h.opts.RefreshInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := h.RefreshOnce(ctx); err != nil {
				h.log.Warn("session refresh", "err", err)
			}
		}
	}
}

// RefreshOnce refreshes every live session that has a refresh token and was
// not refreshed in the last half interval (by this or another replica): a
// refused refresh token revokes the session (the user was disabled or signed
// out at the IdP); changed groups are pushed to the edge.
func (h *Handler) RefreshOnce(ctx context.Context) error {
	p, err := h.idp.get(ctx)
	if err != nil {
		return err
	}
	all, err := h.opts.Store.List(ctx, "")
	if err != nil {
		return fmt.Errorf("list sessions: %w", err)
	}
	var errs []error
	for i := range all {
		if !h.refreshDue(&all[i], h.now()) {
			continue
		}
		outcome, err := h.refreshSession(ctx, p, all[i].ID)
		if err != nil {
			errs = append(errs, err)
			outcome = RefreshError
		}
		if m, ok := h.opts.Metrics.(refreshMetrics); ok {
			m.Refreshed(outcome)
		}
		if ctx.Err() != nil {
			break
		}
	}
	return errors.Join(errs...)
}

// refreshDue reports whether s should be refreshed now.
func (h *Handler) refreshDue(s *session.Session, now time.Time) bool {
	if s.RefreshToken == "" || !s.ExpiresAt.After(now) {
		return false
	}
	last := s.RefreshedAt
	if last.IsZero() {
		last = s.IssuedAt
	}
	return now.Sub(last) >= h.opts.RefreshInterval/2
}

// Refresh outcomes, counted by a Metrics that implements Refreshed (a
// bounded label set: edgepass_refresh_total{outcome}).
const (
	RefreshUnchanged     = "unchanged"
	RefreshGroupsChanged = "groups_changed"
	RefreshRevoked       = "revoked"
	RefreshSkipped       = "skipped"
	RefreshError         = "error"
)

// RefreshOutcomes lists every refresh outcome, for metrics whose series
// start at zero.
var RefreshOutcomes = []string{RefreshUnchanged, RefreshGroupsChanged, RefreshRevoked, RefreshSkipped, RefreshError}

// refreshMetrics is what RefreshOnce reports to, when Metrics has it.
type refreshMetrics interface {
	Refreshed(outcome string)
}

// maxStoreAttempts bounds re-reads when another replica keeps changing a
// session while this one stores its refresh result.
const maxStoreAttempts = 5

// refreshSession refreshes one session at the IdP in three steps: claim it
// (claimRefresh), ask the IdP about it (askIdP), apply the answer
// (applyRefresh: revoke, publish changed groups, store the new tokens).
func (h *Handler) refreshSession(ctx context.Context, p *provider, sid string) (string, error) {
	s, rev, err := h.claimRefresh(ctx, sid)
	if err != nil {
		return "", err
	}
	if s == nil {
		return RefreshSkipped, nil
	}
	ans, err := h.askIdP(ctx, p, s)
	if errors.Is(err, errRefreshRefused) {
		h.log.Info("refresh: the IdP refused the refresh token (user disabled or signed out there); revoking the session",
			"sub", s.Subject, "sid", session.Short(sid))
		return RefreshRevoked, h.refreshRevoke(ctx, s, "the identity provider refused the refresh token (user disabled or signed out there)")
	}
	if err != nil {
		return "", fmt.Errorf("refresh session %s…: %w", session.Short(sid), err)
	}
	return h.applyRefresh(ctx, s, rev, ans)
}

// claimRefresh reads the session and claims it by writing RefreshedAt at
// the revision it read: of two replicas refreshing at once only one wins
// that write, so a rotating refresh token is spent once (spending it twice
// looks like token theft to the IdP, which then refuses it and the session
// would be revoked). A nil session means there is nothing to do: signed
// out, refreshed by another replica since the list was read, or claimed
// by one now.
func (h *Handler) claimRefresh(ctx context.Context, sid string) (*session.Session, uint64, error) {
	s, rev, err := h.opts.Store.Get(ctx, sid)
	if errors.Is(err, session.ErrNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("refresh session %s…: %w", session.Short(sid), err)
	}
	if !h.refreshDue(s, h.now()) {
		return nil, 0, nil
	}
	s.RefreshedAt = h.now()
	rev, err = h.opts.Store.Update(ctx, s, rev)
	if errors.Is(err, session.ErrConflict) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("refresh session %s…: claim: %w", session.Short(sid), err)
	}
	return s, rev, nil
}

// errRefreshRefused: the IdP answered invalid_grant to the session's
// refresh token (the user was disabled or signed out there).
var errRefreshRefused = errors.New("the IdP refused the refresh token")

// refreshAnswer is what the IdP says about a session at refresh.
type refreshAnswer struct {
	id           *identity // claims mapped as at login
	refreshToken string    // "" when the IdP did not rotate it
	idToken      string    // "" when the IdP sent none
}

// askIdP asks the IdP about session s: fresh tokens for its refresh token;
// an ID token that comes with them must verify and name the same user;
// then the user's claims (userinfo fills what the ID token lacks) mapped
// as at login. errRefreshRefused: the IdP refused the refresh token.
func (h *Handler) askIdP(ctx context.Context, p *provider, s *session.Session) (*refreshAnswer, error) {
	cctx := h.idp.clientContext(ctx)
	tok, err := p.refresher.Refresh(cctx, s.RefreshToken)
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.ErrorCode == "invalid_grant" {
			return nil, errRefreshRefused
		}
		return nil, fmt.Errorf("at the IdP: %w", err)
	}
	ans := &refreshAnswer{refreshToken: tok.RefreshToken}
	claims := claimSet{}
	if raw, _ := tok.Extra("id_token").(string); raw != "" {
		idt, err := p.verifier.Verify(cctx, raw)
		if err != nil {
			return nil, fmt.Errorf("ID token rejected: %w", err)
		}
		if idt.Subject != s.Subject {
			return nil, errors.New("refreshed ID token names another subject")
		}
		if err := idt.Claims(&claims); err != nil {
			return nil, err
		}
		ans.idToken = raw
	}
	if ans.id, err = h.identify(ctx, p, s.Subject, claims, tok); err != nil {
		return nil, err
	}
	return ans, nil
}

// applyRefresh applies the IdP's answer to session s (claimed at revision
// rev): a user no longer in a required group is revoked; groups that
// changed at the IdP reach the edges unless an administrator's override is
// in force; then the new tokens and groups are stored.
func (h *Handler) applyRefresh(ctx context.Context, s *session.Session, rev uint64, ans *refreshAnswer) (string, error) {
	id := ans.id
	if !h.allowed(id.Groups) {
		h.log.Info("refresh: user is no longer in a required group; revoking the session", "sub", s.Subject, "sid", session.Short(s.ID))
		return RefreshRevoked, h.refreshRevoke(ctx, s, "no longer in a group of oidc.requiredGroups")
	}
	var groups []string
	if id.hasGroups && !sameSet(id.Groups, s.Groups) && !h.overridden(ctx, s.Subject) {
		if err := h.opts.Edge.SetGroups(ctx, s.Subject, id.Groups); err != nil {
			return "", fmt.Errorf("refresh session %s…: publish groups: %w", session.Short(s.ID), err)
		}
		h.log.Info("refresh: groups changed at the IdP", "sub", s.Subject, "groups", id.Groups)
		ge := sessionEvent(events.KindGroupsChanged, s)
		ge.Detail = "groups: " + strings.Join(id.Groups, ", ")
		h.record(ctx, h.idpEvent(ge, events.SourceRefresh, ""))
		groups = id.Groups
	}
	return h.storeRefresh(ctx, s, rev, ans, groups)
}

// storeRefresh stores a refresh's result (new tokens, and groups when they
// changed) on the latest version of the session; one deleted meanwhile
// (signed out) stays deleted.
func (h *Handler) storeRefresh(ctx context.Context, s *session.Session, rev uint64, ans *refreshAnswer, groups []string) (string, error) {
	sid := s.ID
	for attempt := 1; ; attempt++ {
		if ans.refreshToken != "" {
			s.RefreshToken = ans.refreshToken
		}
		if ans.idToken != "" {
			s.IDToken = ans.idToken
		}
		if groups != nil {
			s.Groups = groups
		}
		s.RefreshedAt = h.now()
		_, err := h.opts.Store.Update(ctx, s, rev)
		if err == nil {
			if groups != nil {
				return RefreshGroupsChanged, nil
			}
			return RefreshUnchanged, nil
		}
		if !errors.Is(err, session.ErrConflict) || attempt == maxStoreAttempts {
			return "", fmt.Errorf("refresh session %s…: store: %w", session.Short(sid), err)
		}
		s, rev, err = h.opts.Store.Get(ctx, sid)
		if errors.Is(err, session.ErrNotFound) {
			return RefreshSkipped, nil
		}
		if err != nil {
			return "", fmt.Errorf("refresh session %s…: store: %w", session.Short(sid), err)
		}
	}
}

// refreshRevoke ends a session the IdP no longer vouches for and records why.
func (h *Handler) refreshRevoke(ctx context.Context, s *session.Session, why string) error {
	if err := h.revokeSession(ctx, s.ID, s.ExpiresAt, KindRefresh); err != nil {
		return err
	}
	h.record(ctx, h.idpEvent(sessionEvent(events.KindSessionRevoked, s), events.SourceRefresh, why))
	return nil
}

// overridden reports whether an administrator's groups are in force for sub.
func (h *Handler) overridden(ctx context.Context, sub string) bool {
	if h.opts.Groups == nil {
		return false
	}
	_, ok, err := h.opts.Groups.GroupsOverride(ctx, sub)
	if err != nil {
		h.log.Warn("refresh: cannot read the admin group override; leaving groups unchanged", "sub", sub, "err", err)
		return true
	}
	return ok
}

// sameSet compares group lists ignoring order.
func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	x, y := slices.Clone(a), slices.Clone(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(x, y)
}
