package events

import (
	"context"
	"sync"
	"time"
)

// Memory is an audit trail in memory with Log's semantics (sequence
// cursors, Filter, newest first), for tests of the packages that record
// and read events.
type Memory struct {
	mu     sync.Mutex
	events []Event
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Record completes e from ctx and keeps it.
func (m *Memory) Record(ctx context.Context, e Event) {
	now := time.Now
	if m.Now != nil {
		now = m.Now
	}
	e = Complete(ctx, e, now())
	m.mu.Lock()
	defer m.mu.Unlock()
	e.Seq = uint64(len(m.events) + 1)
	m.events = append(m.events, e)
}

// All returns every event recorded, oldest first.
func (m *Memory) All() []Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Event(nil), m.events...)
}

// Query answers as Log.Query does.
func (m *Memory) Query(_ context.Context, f Filter) (Page, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if f.Limit <= 0 {
		f.Limit = 50
	}
	p := Page{Events: []Event{}, Last: uint64(len(m.events))}
	if f.After > 0 {
		p.Next = f.After
		for _, e := range m.events {
			if e.Seq <= f.After {
				continue
			}
			p.Next = e.Seq
			if f.Match(e) {
				p.Events = append(p.Events, e)
				if len(p.Events) == f.Limit {
					break
				}
			}
		}
		return p, nil
	}
	for i := len(m.events) - 1; i >= 0; i-- {
		e := m.events[i]
		if f.Before > 0 && e.Seq >= f.Before || !f.Match(e) {
			continue
		}
		p.Events = append(p.Events, e)
		if len(p.Events) == f.Limit {
			if e.Seq > 1 {
				p.Next = e.Seq
			}
			break
		}
	}
	return p, nil
}
