package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/edgepass/edgepass/daemon/edgepub"
	"github.com/edgepass/edgepass/daemon/session"
)

// Input limits of the admin API.
const (
	maxBody       = 64 << 10
	maxIDLen      = 256
	maxSubjectLen = 1024
)

// SessionList is the answer of GET /api/v1/sessions.
type SessionList struct {
	Sessions []session.Session `json:"sessions"`
}

// EdgeList is the answer of GET /api/v1/edges.
type EdgeList struct {
	Edges []EdgeStatus `json:"edges"`
}

// RevokeResult is the answer of DELETE /api/v1/sessions/{sid} and
// POST /api/v1/users/{sub}/revoke.
type RevokeResult struct {
	Revoked  string `json:"revoked"` // "session" or "user"
	ID       string `json:"sid,omitempty"`
	Subject  string `json:"sub,omitempty"`
	Sessions int    `json:"sessions"` // stored sessions deleted
}

// GroupsRequest is the body of PUT /api/v1/users/{sub}/groups; the answer
// echoes it with Subject set.
type GroupsRequest struct {
	Subject string    `json:"sub,omitempty"`
	Groups  *[]string `json:"groups"`
}

// RotateResult is the answer of POST /api/v1/keys/rotate.
type RotateResult struct {
	KeyID string `json:"kid"`
}

// internalError logs the detail and answers a generic 500.
func (h *Handler) internalError(w http.ResponseWriter, what string, err error) {
	h.log.Error("admin API: "+what, "err", err)
	writeError(w, http.StatusInternalServerError, "internal error while trying to "+what+"; see the daemon log")
}

// validText refuses empty, oversized and control-character values.
func validText(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return false
		}
	}
	return true
}

func (h *Handler) listSessions(w http.ResponseWriter, r *http.Request) {
	user := r.URL.Query().Get("user")
	if r.URL.Query().Has("user") && !validText(user, maxSubjectLen) {
		writeError(w, http.StatusBadRequest, "invalid user: want a non-empty subject of at most 1024 bytes")
		return
	}
	all, err := h.opts.Store.List(r.Context(), user)
	if err != nil {
		h.internalError(w, "list sessions", err)
		return
	}
	out := make([]session.Session, 0, len(all))
	for _, s := range all {
		out = append(out, s.Public())
	}
	writeJSON(w, http.StatusOK, SessionList{Sessions: out})
}

// lookup returns the session named by {sid}, having answered 404 or 500
// itself when it returns nil.
func (h *Handler) lookup(w http.ResponseWriter, r *http.Request) *session.Session {
	sid := r.PathValue("sid")
	if !validText(sid, maxIDLen) {
		writeError(w, http.StatusNotFound, "no such session")
		return nil
	}
	s, _, err := h.opts.Store.Get(r.Context(), sid)
	if errors.Is(err, session.ErrNotFound) {
		writeError(w, http.StatusNotFound, "no such session")
		return nil
	}
	if err != nil {
		h.internalError(w, "read session", err)
		return nil
	}
	return s
}

func (h *Handler) getSession(w http.ResponseWriter, r *http.Request) {
	if s := h.lookup(w, r); s != nil {
		writeJSON(w, http.StatusOK, s.Public())
	}
}

func (h *Handler) deleteSession(w http.ResponseWriter, r *http.Request) {
	s := h.lookup(w, r)
	if s == nil {
		return
	}
	revoker := session.Revoker{Edge: h.opts.Edge, Store: h.opts.Store, Metrics: h.opts.Metrics}
	if err := revoker.Revoke(r.Context(), s.ID, s.ExpiresAt, KindAdminSession); err != nil {
		h.internalError(w, "revoke the session", err)
		return
	}
	h.log.Info("admin revoked a session", "sid", session.Short(s.ID), "sub", s.Subject)
	writeJSON(w, http.StatusOK, RevokeResult{Revoked: "session", ID: s.ID, Subject: s.Subject, Sessions: 1})
}

// subject returns {sub}, having answered 400 itself when it returns "".
func subject(w http.ResponseWriter, r *http.Request) string {
	sub := r.PathValue("sub")
	if !validText(sub, maxSubjectLen) {
		writeError(w, http.StatusBadRequest, "invalid subject: want a non-empty IdP sub of at most 1024 bytes")
		return ""
	}
	return sub
}

// revokeUser refuses every token the user holds now (the edge's
// revoke.user fact) and deletes their stored sessions, so refresh stops too.
// A subject without sessions is revoked all the same: tokens outlive lost state.
func (h *Handler) revokeUser(w http.ResponseWriter, r *http.Request) {
	sub := subject(w, r)
	if sub == "" {
		return
	}
	if err := h.opts.Edge.RevokeUser(r.Context(), sub, h.now()); err != nil {
		h.internalError(w, "publish the user revocation", err)
		return
	}
	all, err := h.opts.Store.List(r.Context(), sub)
	if err != nil {
		h.internalError(w, "list the user's sessions", err)
		return
	}
	n := 0
	for _, s := range all {
		if err := h.opts.Store.Delete(r.Context(), s.ID); err != nil && !errors.Is(err, session.ErrNotFound) {
			h.internalError(w, "delete the user's sessions", err)
			return
		}
		n++
	}
	h.opts.Metrics.Revoked(KindAdminUser)
	h.log.Info("admin revoked a user", "sub", sub, "sessions", n)
	writeJSON(w, http.StatusOK, RevokeResult{Revoked: "user", Subject: sub, Sessions: n})
}

func (h *Handler) setGroups(w http.ResponseWriter, r *http.Request) {
	sub := subject(w, r)
	if sub == "" {
		return
	}
	var req GroupsRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if req.Groups == nil {
		writeError(w, http.StatusBadRequest, `missing "groups": want {"groups":["a","b"]}`)
		return
	}
	groups := *req.Groups
	if len(groups) > edgepub.MaxGroups {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("too many groups: %d, at most %d", len(groups), edgepub.MaxGroups))
		return
	}
	seen := map[string]bool{}
	total := 0
	for i, g := range groups {
		if total += len(g); total > edgepub.MaxGroupBytes {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("groups too large: at most %d bytes of names in total", edgepub.MaxGroupBytes))
			return
		}
		if !validText(g, edgepub.MaxGroupName) {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("groups[%d]: want a non-empty name of at most %d bytes without control characters", i, edgepub.MaxGroupName))
			return
		}
		if seen[g] {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("groups[%d]: duplicate %q", i, g))
			return
		}
		seen[g] = true
	}
	if err := h.opts.Edge.SetGroups(r.Context(), sub, groups); err != nil {
		h.internalError(w, "publish the groups", err)
		return
	}
	h.log.Info("admin set groups", "sub", sub, "groups", groups)
	writeJSON(w, http.StatusOK, GroupsRequest{Subject: sub, Groups: &groups})
}

// clearGroups lifts the subject's group override: tokens fall back to the
// groups they were issued with, and later logins and refreshes use the IdP's.
func (h *Handler) clearGroups(w http.ResponseWriter, r *http.Request) {
	sub := subject(w, r)
	if sub == "" {
		return
	}
	if err := h.opts.Edge.(GroupClearer).ClearGroups(r.Context(), sub); err != nil {
		h.internalError(w, "clear the groups", err)
		return
	}
	h.log.Info("admin cleared the group override", "sub", sub)
	writeJSON(w, http.StatusOK, GroupsRequest{Subject: sub})
}

func (h *Handler) rotateKeys(w http.ResponseWriter, r *http.Request) {
	kid, err := h.opts.Keys.Rotate(r.Context())
	if err != nil {
		h.internalError(w, "rotate the signing key", err)
		return
	}
	h.log.Info("admin rotated the signing key", "kid", kid)
	writeJSON(w, http.StatusOK, RotateResult{KeyID: kid})
}

func (h *Handler) edges(w http.ResponseWriter, r *http.Request) {
	edges := h.opts.Edges.List()
	if edges == nil {
		edges = []EdgeStatus{}
	}
	writeJSON(w, http.StatusOK, EdgeList{Edges: edges})
}

// decodeBody reads one JSON object of at most maxBody bytes with no unknown
// fields and nothing after it; on failure it has answered 400 or 413.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", maxBody))
		} else {
			writeError(w, http.StatusBadRequest, "cannot read the body")
		}
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "malformed JSON body: "+jsonProblem(err))
		return false
	}
	if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
		writeError(w, http.StatusBadRequest, "malformed JSON body: unexpected data after the object")
		return false
	}
	return true
}

// jsonProblem describes a decoding error without echoing the body.
func jsonProblem(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("syntax error at byte %d", syn.Offset)
	case errors.As(err, &typ):
		return fmt.Sprintf("field %q: want %s", typ.Field, typ.Type)
	case errors.Is(err, io.EOF):
		return "empty body"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "truncated"
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return strings.TrimPrefix(err.Error(), "json: ")
	}
	return "cannot decode"
}
