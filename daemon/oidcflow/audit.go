package oidcflow

import (
	"context"

	"github.com/edgepass/edgepass/daemon/events"
	"github.com/edgepass/edgepass/daemon/session"
)

// record adds an event to the audit trail (Options.Events), if any.
func (h *Handler) record(ctx context.Context, e events.Event) {
	if h.opts.Events != nil {
		h.opts.Events.Record(ctx, e)
	}
}

// sessionEvent describes a change to session s.
func sessionEvent(kind string, s *session.Session) events.Event {
	return events.Event{Kind: kind, User: s.Username, Email: s.Email, Subject: s.Subject, SessionID: session.Short(s.ID)}
}

// userActor is the user acting on their own session (sign-in, sign-out).
func userActor(s *session.Session) string { return session.Label(s.Username, s.Email, s.Subject) }

// idpEvent is e caused by the IdP (back-channel logout, refresh).
func (h *Handler) idpEvent(e events.Event, source, reason string) events.Event {
	e.Actor, e.ActorType, e.Source, e.Reason = h.opts.Issuer, events.ActorIdP, source, reason
	return e
}
