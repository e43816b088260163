package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/edgepass/edgepass/daemon/events"
	"github.com/edgepass/edgepass/daemon/servicetoken"
	"github.com/edgepass/edgepass/daemon/session"
)

// ServiceTokens issues, lists and revokes service tokens;
// *servicetoken.Manager implements it.
type ServiceTokens interface {
	Create(ctx context.Context, req servicetoken.CreateRequest) (*servicetoken.Created, error)
	List(ctx context.Context) ([]session.Session, error)
	Revoke(ctx context.Context, id, kind string) (*session.Session, error)
}

// ServiceTokenList is the answer of GET /api/v1/service-tokens.
type ServiceTokenList struct {
	Tokens []session.Session `json:"tokens"`
}

// ServiceTokenRevoked is the answer of DELETE /api/v1/service-tokens/{id}.
type ServiceTokenRevoked struct {
	Revoked string `json:"revoked"` // "service-token"
	ID      string `json:"id"`
	Name    string `json:"name"`
	Subject string `json:"sub"`
}

// serviceTokenRoutes adds /api/v1/service-tokens when Options.ServiceTokens is set.
func (h *Handler) serviceTokenRoutes(route func(path string, methods map[string]http.HandlerFunc)) {
	if h.opts.ServiceTokens == nil {
		return
	}
	route("/api/v1/service-tokens", map[string]http.HandlerFunc{"GET": h.listServiceTokens, "POST": h.createServiceToken})
	route("/api/v1/service-tokens/{id}", map[string]http.HandlerFunc{"DELETE": h.revokeServiceToken})
}

func (h *Handler) createServiceToken(w http.ResponseWriter, r *http.Request) {
	var req servicetoken.CreateRequest
	if !decodeBody(w, r, &req) {
		return
	}
	c, err := h.opts.ServiceTokens.Create(r.Context(), req)
	var ie *servicetoken.InputError
	if errors.As(err, &ie) {
		writeError(w, http.StatusBadRequest, ie.Msg)
		return
	}
	if err != nil {
		h.internalError(w, "create the service token", err)
		return
	}
	// Never the token itself: it is shown once, in this answer.
	h.log.Info("admin created a service token", "name", c.Name, "id", session.Short(c.ID), "audiences", c.Audiences, "groups", c.Groups, "expiresAt", c.ExpiresAt)
	h.audit(r, serviceTokenEvent(events.KindServiceTokenCreated, c.ID, c.Name, c.Subject, c.Audiences, c.Groups, c.ExpiresAt))
	writeJSON(w, http.StatusCreated, c)
}

// serviceTokenEvent describes a service token for the audit trail: its
// name, id, scope (audiences), groups and expiry; never the token.
func serviceTokenEvent(kind, id, name, sub string, audiences, groups []string, exp time.Time) events.Event {
	return events.Event{Kind: kind, User: name, Subject: sub, SessionID: session.Short(id),
		Detail: fmt.Sprintf("service token %s; audiences: %s; groups: %s; expires %s",
			name, strings.Join(audiences, ", "), groupList(groups), exp.UTC().Format(time.RFC3339))}
}

// serviceTokenEventOf is serviceTokenEvent for a stored record.
func serviceTokenEventOf(kind string, s *session.Session) events.Event {
	return serviceTokenEvent(kind, s.ID, s.Username, s.Subject, s.Audiences, s.Groups, s.ExpiresAt)
}

func (h *Handler) listServiceTokens(w http.ResponseWriter, r *http.Request) {
	list, err := h.opts.ServiceTokens.List(r.Context())
	if err != nil {
		h.internalError(w, "list service tokens", err)
		return
	}
	writeJSON(w, http.StatusOK, ServiceTokenList{Tokens: list})
}

func (h *Handler) revokeServiceToken(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s, err := h.opts.ServiceTokens.Revoke(r.Context(), id, KindAdminSession)
	if errors.Is(err, servicetoken.ErrNotFound) {
		writeError(w, http.StatusNotFound, servicetoken.ErrNotFound.Error())
		return
	}
	if err != nil {
		h.internalError(w, "revoke the service token", err)
		return
	}
	h.log.Info("admin revoked a service token", "name", s.Username, "id", session.Short(s.ID))
	h.audit(r, serviceTokenEventOf(events.KindServiceTokenRevoked, s))
	writeJSON(w, http.StatusOK, ServiceTokenRevoked{Revoked: "service-token", ID: s.ID, Name: s.Username, Subject: s.Subject})
}
