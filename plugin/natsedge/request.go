package natsedge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Requests to the daemon (identity assertions, package mint) travel on a
// connection of their own, opened on first use: the watcher's link loop
// stays as it is, and a slow daemon never delays the edge state. One per
// watcher (per distinct NATS setting), so connections stay flat however
// many middlewares Traefik creates. Replies arrive on the edge's inbox
// prefix (its credential may subscribe there and nowhere else).

// ErrNoResponders: no daemon listens on the subject (the server said so at once).
var ErrNoResponders = errors.New("natsedge: no daemon answers requests (is the daemon running, and new enough?)")

// ErrRequestTimeout: no reply within the timeout.
var ErrRequestTimeout = errors.New("natsedge: request timed out")

// requestRetry bounds how often a failed connect is retried: requests
// meanwhile fail at once instead of each waiting for a dial.
const requestRetry = time.Second

type requester struct {
	w *Watcher

	mu      sync.Mutex
	c       *conn // nil while not connected
	inbox   string
	waiting map[string]*pendingReply
	n       uint64
	failAt  time.Time
	failErr error
	next    int // server to try first
}

// pendingReply is a request waiting for its reply: msg is set before done
// is closed (nil: the connection was lost). A struct with a plain channel,
// not a channel of interpreted pointers: simpler for yaegi.
type pendingReply struct {
	done chan struct{}
	msg  *message
}

var (
	requestersMu sync.Mutex
	requesters   = map[*Watcher]*requester{}
)

func (w *Watcher) requester() *requester {
	requestersMu.Lock()
	defer requestersMu.Unlock()
	r := requesters[w]
	if r == nil {
		r = &requester{w: w, waiting: map[string]*pendingReply{}}
		requesters[w] = r
		go func() {
			<-w.ctx.Done()
			r.mu.Lock()
			c := r.c
			r.c = nil
			r.mu.Unlock()
			if c != nil {
				c.nc.Close()
			}
			requestersMu.Lock()
			delete(requesters, w)
			requestersMu.Unlock()
		}()
	}
	return r
}

// EdgeName is the edge's name (its inbox, consumers and subjects).
func (w *Watcher) EdgeName() string { return w.s.edge }

// Bucket is the edge bucket the watcher follows.
func (w *Watcher) Bucket() string { return w.s.bucket }

// Request publishes payload to subject with a reply subject under the
// edge's inbox and waits up to timeout for the answer. It is for the
// edge's own request subjects (AssertionSubject); the connection is opened
// on the first call and again after a failure.
func (w *Watcher) Request(subject string, payload []byte, timeout time.Duration) ([]byte, error) {
	r := w.requester()
	r.mu.Lock()
	if r.c == nil {
		if err := r.connect(); err != nil {
			r.mu.Unlock()
			return nil, err
		}
	}
	c := r.c
	r.n++
	token := strconv.FormatUint(r.n, 36)
	pr := &pendingReply{done: make(chan struct{})}
	r.waiting[token] = pr
	buf := appendPub(nil, subject, r.inbox+"."+token, nil, payload)
	err := c.write(buf)
	r.mu.Unlock()
	if err != nil {
		r.drop(c, err)
		r.forget(token)
		return nil, fmt.Errorf("natsedge: request: %w", err)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-pr.done:
	case <-t.C:
		r.forget(token)
		// A silent connection may be dead: the next request dials again.
		r.drop(c, ErrRequestTimeout)
		return nil, ErrRequestTimeout
	case <-w.ctx.Done():
		r.forget(token)
		return nil, errors.New("natsedge: watcher closed")
	}
	m := pr.msg
	if m == nil {
		return nil, errors.New("natsedge: connection lost before the reply")
	}
	if m.status == 503 {
		return nil, ErrNoResponders
	}
	if m.status != 0 {
		return nil, fmt.Errorf("natsedge: request answered with status %d %s", m.status, m.description)
	}
	data := m.data
	return data, nil
}

func (r *requester) forget(token string) {
	r.mu.Lock()
	delete(r.waiting, token)
	r.mu.Unlock()
}

// connect dials the servers in turn; r.mu held.
func (r *requester) connect() error {
	now := time.Now()
	if r.failErr != nil && now.Sub(r.failAt) < requestRetry {
		return r.failErr
	}
	servers := r.w.s.servers
	var last error
	for i := 0; i < len(servers); i++ {
		u := servers[(r.next+i)%len(servers)]
		ctx, cancel := context.WithTimeout(r.w.ctx, dialTimeout+handshakeTimeout)
		c, err := r.w.s.dial(ctx, u, func(net.Conn) {})
		cancel()
		if err != nil {
			last = err
			continue
		}
		inbox := newInbox(r.w.s.edge)
		if err := c.write(appendSub(nil, inbox+".*", 1)); err != nil {
			c.nc.Close()
			last = err
			continue
		}
		// One by one: yaegi panics on nil in a tuple assignment.
		r.c = c
		r.inbox = inbox
		r.failErr = nil
		r.next = (r.next + i) % len(servers)
		go r.read(c)
		return nil
	}
	r.failAt = now
	r.failErr = fmt.Errorf("natsedge: request connection: %w", last)
	r.next++
	return r.failErr
}

// read delivers replies to their waiters and answers the server's PINGs
// until the connection fails.
func (r *requester) read(c *conn) {
	for {
		f, err := c.p.next()
		if err != nil {
			r.drop(c, err)
			return
		}
		switch f.kind {
		case opPing:
			r.mu.Lock()
			werr := c.write([]byte("PONG\r\n"))
			r.mu.Unlock()
			if werr != nil {
				r.drop(c, werr)
				return
			}
		case opErr:
			r.drop(c, fmt.Errorf("server error: %s", f.err))
			return
		case opMsg:
			m := f.msg
			_, token, ok := strings.Cut(m.subject, r.inboxOf(c)+".")
			if !ok {
				continue
			}
			r.mu.Lock()
			pr := r.waiting[token]
			delete(r.waiting, token)
			r.mu.Unlock()
			if pr != nil {
				pr.msg = m
				close(pr.done)
			}
		}
	}
}

func (r *requester) inboxOf(c *conn) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.c == c {
		return r.inbox
	}
	return "\x00" // a dropped connection: nothing matches
}

// drop closes c if it is still the current connection and fails its
// waiters; err, why it is dropped, is logged.
func (r *requester) drop(c *conn, err error) {
	r.mu.Lock()
	if r.c != c {
		r.mu.Unlock()
		return
	}
	r.c = nil
	waiting := r.waiting
	r.waiting = map[string]*pendingReply{}
	r.mu.Unlock()
	c.nc.Close()
	for token := range waiting {
		close(waiting[token].done)
	}
	if err != nil {
		r.w.logf("request connection to %s dropped: %v", c.server.redact, err)
	}
}
