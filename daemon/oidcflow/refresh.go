package oidcflow

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

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
	all, err := h.opts.Store.List(ctx)
	if err != nil {
		return fmt.Errorf("list sessions: %w", err)
	}
	now := h.now()
	var errs []error
	for i := range all {
		s := &all[i]
		if s.RefreshToken == "" || !s.ExpiresAt.After(now) {
			continue
		}
		last := s.RefreshedAt
		if last.IsZero() {
			last = s.IssuedAt
		}
		if now.Sub(last) < h.opts.RefreshInterval/2 {
			continue
		}
		if err := h.refreshSession(ctx, p, s); err != nil {
			errs = append(errs, err)
		}
		if ctx.Err() != nil {
			break
		}
	}
	return errors.Join(errs...)
}

// refreshSession refreshes one session at the IdP.
func (h *Handler) refreshSession(ctx context.Context, p *provider, s *session.Session) error {
	short := s.ID[:min(8, len(s.ID))]
	cctx := h.idp.clientContext(ctx)
	tok, err := p.oauth.TokenSource(cctx, &oauth2.Token{RefreshToken: s.RefreshToken}).Token()
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.ErrorCode == "invalid_grant" {
			h.log.Info("refresh: the IdP refused the refresh token (user disabled or signed out there); revoking the session",
				"sub", s.Subject, "sid", short)
			return h.revokeSession(ctx, s.ID, s.ExpiresAt, KindRefresh)
		}
		return fmt.Errorf("refresh session %s… at the IdP: %w", short, err)
	}
	claims := claimSet{}
	if raw, _ := tok.Extra("id_token").(string); raw != "" {
		idt, err := p.verifier.Verify(cctx, raw)
		if err != nil {
			return fmt.Errorf("refresh session %s…: ID token rejected: %w", short, err)
		}
		if idt.Subject != s.Subject {
			return fmt.Errorf("refresh session %s…: refreshed ID token names another subject", short)
		}
		if err := idt.Claims(&claims); err != nil {
			return fmt.Errorf("refresh session %s…: %w", short, err)
		}
		s.IDToken = raw
	}
	id, err := h.identify(ctx, p, s.Subject, claims, tok)
	if err != nil {
		return fmt.Errorf("refresh session %s…: %w", short, err)
	}
	if !h.allowed(id.Groups) {
		h.log.Info("refresh: user is no longer in a required group; revoking the session", "sub", s.Subject, "sid", short)
		return h.revokeSession(ctx, s.ID, s.ExpiresAt, KindRefresh)
	}
	if id.hasGroups && !sameSet(id.Groups, s.Groups) && !h.overridden(ctx, s.Subject) {
		if err := h.opts.Edge.SetGroups(ctx, s.Subject, id.Groups); err != nil {
			return fmt.Errorf("refresh session %s…: publish groups: %w", short, err)
		}
		h.log.Info("refresh: groups changed at the IdP", "sub", s.Subject, "groups", id.Groups)
		s.Groups = id.Groups
	}
	if tok.RefreshToken != "" {
		s.RefreshToken = tok.RefreshToken
	}
	s.RefreshedAt = h.now()
	// Do not resurrect a session that was logged out while we refreshed.
	cur, err := h.opts.Store.Get(ctx, s.ID)
	if err != nil {
		return fmt.Errorf("refresh session %s…: %w", short, err)
	}
	if cur == nil {
		return nil
	}
	if err := h.opts.Store.Put(ctx, s); err != nil {
		return fmt.Errorf("refresh session %s…: store: %w", short, err)
	}
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
