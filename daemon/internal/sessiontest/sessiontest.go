// Package sessiontest is an in-memory stand-in for session.Store, with the
// same method set, revisions and errors, so handlers that consume the store
// test without NATS.
package sessiontest

import (
	"context"
	"slices"
	"strings"
	"sync"

	"github.com/edgepass/edgepass/daemon/session"
)

// Store keeps sessions in a map. Set Fail to make every call return it.
type Store struct {
	mu   sync.Mutex
	m    map[string]entry
	rev  uint64
	Fail error
	// BeforeUpdate, if set, runs at the start of every Update (outside the
	// lock): tests use it to interleave another replica's writes.
	BeforeUpdate func(s *session.Session)
	// lists counts List calls: each one a scan of the real bucket.
	lists int
}

type entry struct {
	s   session.Session
	rev uint64
}

// New returns a store holding sessions (each at its own revision).
func New(sessions ...session.Session) *Store {
	st := &Store{m: map[string]entry{}}
	for i := range sessions {
		st.rev++
		st.m[sessions[i].ID] = entry{sessions[i], st.rev}
	}
	return st
}

// Put creates or replaces the session.
func (st *Store) Put(_ context.Context, s *session.Session) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.Fail != nil {
		return st.Fail
	}
	st.rev++
	st.m[s.ID] = entry{*s, st.rev}
	return nil
}

// Get returns a copy of the session and its revision, or session.ErrNotFound.
func (st *Store) Get(_ context.Context, id string) (*session.Session, uint64, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.Fail != nil {
		return nil, 0, st.Fail
	}
	e, ok := st.m[id]
	if !ok {
		return nil, 0, session.ErrNotFound
	}
	s := e.s
	return &s, e.rev, nil
}

// Update replaces the session if it is still at revision rev, else
// session.ErrConflict (also when it was deleted meanwhile).
func (st *Store) Update(_ context.Context, s *session.Session, rev uint64) (uint64, error) {
	if st.BeforeUpdate != nil {
		st.BeforeUpdate(s)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.Fail != nil {
		return 0, st.Fail
	}
	if e, ok := st.m[s.ID]; !ok || e.rev != rev {
		return 0, session.ErrConflict
	}
	st.rev++
	st.m[s.ID] = entry{*s, st.rev}
	return st.rev, nil
}

// Delete removes the session; a missing one is not an error.
func (st *Store) Delete(_ context.Context, id string) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.Fail != nil {
		return st.Fail
	}
	delete(st.m, id)
	return nil
}

// List returns the sessions oldest first (issuedAt, then id) like
// session.Store.List; subject != "" keeps that user's.
func (st *Store) List(_ context.Context, subject string) ([]session.Session, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.lists++
	if st.Fail != nil {
		return nil, st.Fail
	}
	return st.list(subject), nil
}

// Lists returns how many times List was called (each a scan of the real
// bucket), and starts counting again.
func (st *Store) Lists() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	n := st.lists
	st.lists = 0
	return n
}

// All returns every session (ignoring Fail), for assertions.
func (st *Store) All() []session.Session {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.list("")
}

func (st *Store) list(subject string) []session.Session {
	out := make([]session.Session, 0, len(st.m))
	for _, e := range st.m {
		if subject == "" || e.s.Subject == subject {
			out = append(out, e.s)
		}
	}
	slices.SortFunc(out, func(a, b session.Session) int {
		if c := a.IssuedAt.Compare(b.IssuedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// Len is the number of stored sessions.
func (st *Store) Len() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return len(st.m)
}

// Has reports whether a session with this id is stored.
func (st *Store) Has(id string) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	_, ok := st.m[id]
	return ok
}
