package admin

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/edgepass/edgepass/daemon/edgepub"
	"github.com/edgepass/edgepass/daemon/events"
	"github.com/edgepass/edgepass/daemon/keys"
	"github.com/edgepass/edgepass/daemon/session"
	"github.com/edgepass/edgepass/plugin/token"
)

// audit records a change made by the request's actor (set by authenticate,
// or by the console through Internal).
func (h *Handler) audit(r *http.Request, e events.Event) {
	h.opts.Audit.Record(r.Context(), e)
}

// userEvent describes a change to the user sub, named as the operator
// named them (user) and by their stored sessions' username and email.
func userEvent(kind, user, sub string, sessions []session.Session, detail string) events.Event {
	e := events.Event{Kind: kind, User: strings.TrimPrefix(user, SubPrefix), Subject: sub, Detail: detail}
	for _, s := range sessions {
		if s.Subject != sub {
			continue
		}
		if s.Username != "" {
			e.User = s.Username
		}
		if s.Email != "" {
			e.Email = s.Email
		}
		break
	}
	return e
}

// userEventOf is userEvent over the sessions the lookup of m read, or for
// an explicit sub its sessions read now (a failure only leaves the names
// out).
func (h *Handler) userEventOf(r *http.Request, kind, user string, m UserMatch, detail string) events.Event {
	all := m.sessions
	if all == nil {
		var err error
		if all, err = h.opts.Store.List(r.Context(), m.Subject); err != nil {
			h.log.Debug("admin API: list sessions to name an audit event", "err", err)
		}
	}
	return userEvent(kind, user, m.Subject, all, detail)
}

func groupList(groups []string) string {
	if len(groups) == 0 {
		return "(none)"
	}
	return strings.Join(groups, ", ")
}

func keyRevokeDetail(res keys.RevokeResult, sessions int) string {
	d := fmt.Sprintf("%d session(s) it signed ended", sessions)
	if res.WasActive {
		d += "; it was the signing key, new tokens are signed with " + res.SigningKeyID
	}
	return d
}

// listEvents serves GET /api/v1/events?user=&actor=&kind=&source=&before=&after=&limit=.
func (h *Handler) listEvents(w http.ResponseWriter, r *http.Request) {
	f, msg := ParseEventFilter(r.URL.Query())
	if msg != "" {
		writeError(w, http.StatusBadRequest, msg)
		return
	}
	p, err := h.opts.Events.Query(r.Context(), f)
	if err != nil {
		h.internalError(w, "read the audit trail", err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

// ParseEventFilter reads an events filter from query parameters (user,
// actor, kind, source, before, after, limit); msg says what is wrong.
func ParseEventFilter(q map[string][]string) (events.Filter, string) {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	f := events.Filter{User: strings.TrimSpace(get("user")), Actor: strings.TrimSpace(get("actor")), Kind: get("kind"), Source: get("source")}
	if len(f.User) > maxSubjectLen || len(f.Actor) > maxSubjectLen {
		return f, "user and actor filters are at most 1024 bytes"
	}
	if f.Kind != "" && !events.ValidKind(f.Kind) {
		return f, fmt.Sprintf("unknown kind %q; use one of %s", f.Kind, strings.Join(events.Kinds, ", "))
	}
	if f.Source != "" && !events.ValidSource(f.Source) {
		return f, fmt.Sprintf("unknown source %q; use one of %s", f.Source, strings.Join(events.Sources, ", "))
	}
	num := func(name string, dst *uint64) string {
		v := get(name)
		if v == "" {
			return ""
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return name + ": want a cursor (a number) from a previous answer's next or last"
		}
		*dst = n
		return ""
	}
	if m := num("before", &f.Before); m != "" {
		return f, m
	}
	if m := num("after", &f.After); m != "" {
		return f, m
	}
	if f.Before > 0 && f.After > 0 {
		return f, "give before or after, not both"
	}
	if v := get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > events.MaxLimit {
			return f, fmt.Sprintf("limit: want 1 to %d", events.MaxLimit)
		}
		f.Limit = n
	}
	return f, ""
}

// OverrideLister lists the administrators' group overrides in force;
// *edgepub.Publisher implements it.
type OverrideLister interface {
	AdminOverrides(ctx context.Context) ([]edgepub.Override, error)
}

// Override is one administrator's group override in GET /api/v1/groups.
// The edge bucket names users by subject key only: Subject, User and Email
// are filled from the stored sessions and the audit trail when known.
type Override struct {
	SubjectKey string    `json:"subjectKey"`
	Subject    string    `json:"sub,omitempty"`
	User       string    `json:"user,omitempty"`
	Email      string    `json:"email,omitempty"`
	Groups     []string  `json:"groups"`
	Set        time.Time `json:"set"`
	Expires    time.Time `json:"expires,omitzero"`
}

// OverrideList is the answer of GET /api/v1/groups.
type OverrideList struct {
	Overrides []Override `json:"overrides"`
}

// overrideNameEvents bounds the audit events read to name overrides.
const overrideNameEvents = 500

func (h *Handler) listOverrides(w http.ResponseWriter, r *http.Request) {
	list, err := h.opts.Overrides.AdminOverrides(r.Context())
	if err != nil {
		h.internalError(w, "list the group overrides", err)
		return
	}
	all, err := h.opts.Store.List(r.Context(), "")
	if err != nil {
		h.internalError(w, "list sessions", err)
		return
	}
	type who struct{ sub, user, email string }
	names := map[string]who{}
	if h.opts.Events != nil {
		// Subjects without a session: whoever set the override named them.
		p, err := h.opts.Events.Query(r.Context(), events.Filter{Kind: events.KindGroupsSet, Limit: overrideNameEvents})
		if err != nil {
			h.log.Debug("admin API: read group events to name overrides", "err", err)
		}
		for _, e := range slices.Backward(p.Events) {
			if e.Subject != "" {
				names[token.SubjectKey(e.Subject)] = who{e.Subject, e.User, e.Email}
			}
		}
	}
	for _, s := range all {
		names[token.SubjectKey(s.Subject)] = who{s.Subject, s.Username, s.Email}
	}
	out := make([]Override, 0, len(list))
	for _, o := range list {
		n := names[o.SubjectKey]
		out = append(out, Override{SubjectKey: o.SubjectKey, Subject: n.sub, User: n.user, Email: n.email, Groups: o.Groups, Set: o.At, Expires: o.Exp})
	}
	slices.SortFunc(out, func(a, b Override) int { return b.Set.Compare(a.Set) })
	writeJSON(w, http.StatusOK, OverrideList{Overrides: out})
}
