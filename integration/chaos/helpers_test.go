package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/edgepass/edgepass/integration/harness"
)

// session is a signed-in browser session the test created.
type session struct {
	label string
	user  string
	token string
	sid   string
	// loginBy and callbackBy are the daemon replicas that served the
	// login's /login and /callback (through the balancer).
	loginBy, callbackBy string
}

// loginError is a login that did not complete, with where each half of the
// flow was served.
type loginError struct {
	label               string
	loginBy, callbackBy string
	callbackStatus      int
	err                 error
}

func (e *loginError) Error() string {
	return fmt.Sprintf("login %s (/login on %s, /callback on %s answered %d): %v", e.label, orNone(e.loginBy), orNone(e.callbackBy), e.callbackStatus, e.err)
}

// crossReplica reports the failure of a login whose callback landed on
// another replica than its /login and was refused there: the replicas do
// not share pending logins.
func (e *loginError) crossReplica() bool {
	return e.loginBy != "" && e.callbackBy != "" && e.loginBy != e.callbackBy && e.callbackStatus == http.StatusBadRequest
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// credentials of the provider's demo users, by name.
var passwords = map[string]string{harness.AliceUser: harness.AlicePassword, harness.BobUser: harness.BobPassword}

// run holds what the steps share.
type run struct {
	s      *harness.HAStack
	ledger *ledger
	trace  *apiTrace // nil if it could not start
	mu     sync.Mutex
	// created are the sessions of every completed login.
	created []*session
}

func (r *run) target(edge *harness.Traefik, label string) string {
	return fmt.Sprintf("%s%s/%s?n=%s", edge.URL, harness.PathApp, label, harness.RandomSecret(4))
}

// login signs in as a browser through edge (the plugin sends it to the
// balancer's /login, the provider back to the balancer's /callback) and
// records which replica served each half.
func (r *run) login(label, user string, edge *harness.Traefik) (*session, error) {
	target := r.target(edge, label)
	b := harness.NewBrowser(r.s.Provider.Issuer)
	page, shown, err := b.SignIn(target, user, passwords[user])
	if err == nil && !shown {
		err = errors.New("the provider never asked for credentials")
	}
	return r.finishLogin(label, user, target, b, page, err)
}

// finishLogin checks that a login landed back on target with 200 and a
// session cookie (harness.Browser.SessionAt) and finds, in the balancer's
// records, the replicas that served its /login and its /callback.
func (r *run) finishLogin(label, user, target string, b *harness.Browser, page *harness.Page, err error) (*session, error) {
	le := &loginError{label: label}
	if lr, ok := r.s.LB.Find("/login", func(q url.Values) bool { return q.Get("rd") == target }); ok {
		le.loginBy = lr.Backend
	}
	if page != nil {
		for _, h := range page.Hops {
			if !strings.HasPrefix(h.URL, r.s.PublicURL+"/callback?") {
				continue
			}
			state := harness.QueryParam(h.URL, "state")
			if cb, ok := r.s.LB.Find("/callback", func(q url.Values) bool { return q.Get("state") == state }); ok && state != "" {
				le.callbackBy, le.callbackStatus = cb.Backend, cb.Status
			}
		}
	}
	switch {
	case err != nil && page != nil:
		le.err = fmt.Errorf("%v\nnavigation:\n%sbody: %.300s", err, page.Trace(), page.Body)
		return nil, le
	case err != nil:
		le.err = err
		return nil, le
	}
	tok, err := b.SessionAt(page, target)
	if err != nil {
		le.err = err
		return nil, le
	}
	var claims struct {
		Sid string `json:"sid"`
	}
	if err := harness.DecodeJWT(tok, nil, &claims); err != nil || claims.Sid == "" {
		le.err = fmt.Errorf("session token without sid: %v", err)
		return nil, le
	}
	s := &session{label: label, user: user, token: tok, sid: claims.Sid, loginBy: le.loginBy, callbackBy: le.callbackBy}
	r.mu.Lock()
	r.created = append(r.created, s)
	r.mu.Unlock()
	r.ledger.addSession(s)
	return s, nil
}

// edgeStatus is one replica's line of GET /api/v1/edges.
type edgeStatus struct {
	Edge     string    `json:"edge"`
	Replica  string    `json:"replica"`
	Seq      uint64    `json:"seq"`
	Synced   bool      `json:"synced"`
	Stale    bool      `json:"stale"`
	Behind   uint64    `json:"behind"`
	Received time.Time `json:"received"`
}

func edgesOf(d *harness.Daemon) ([]edgeStatus, error) {
	code, body, err := d.Admin("GET", "/api/v1/edges", nil)
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET /api/v1/edges: %d %s", code, body)
	}
	var l struct {
		Edges []edgeStatus `json:"edges"`
	}
	if err := json.Unmarshal(body, &l); err != nil {
		return nil, err
	}
	return l.Edges, nil
}

// allSynced reports whether every replica in names is listed synced, not
// stale and caught up, with a heartbeat received after since.
func allSynced(list []edgeStatus, names []string, since time.Time) (bool, string) {
	var missing []string
	for _, n := range names {
		found := false
		for _, e := range list {
			if e.Replica == n && e.Synced && !e.Stale && e.Behind == 0 && e.Received.After(since) {
				found = true
			}
		}
		if !found {
			missing = append(missing, n)
		}
	}
	return len(missing) == 0, strings.Join(missing, ", ")
}

// edgeConnectedLine is how the plugin logs a connection to a NATS server
// (Traefik writes the plugin's stderr to its log).
const edgeConnectedLine = "natsedge: connected to "

// lastConnectedURL is the NATS URL of the last "connected to" line in the
// replica's log from offset on ("" if none).
func lastConnectedURL(t *harness.Traefik, offset int64) (string, error) {
	data, err := t.LogFrom(offset)
	if err != nil {
		return "", err
	}
	i := strings.LastIndex(string(data), edgeConnectedLine)
	if i < 0 {
		return "", nil
	}
	rest := string(data[i+len(edgeConnectedLine):])
	u, _, _ := strings.Cut(rest, " ")
	return u, nil
}

// edgeConns counts the "edgepass-edge" client connections of each running
// node.
func edgeConns(ctx context.Context, c *harness.NATSCluster) (map[string]int, error) {
	out := map[string]int{}
	var errs []error
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		conns, err := n.ClientsNamed(ctx, "edgepass-edge")
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out[n.Name] = len(conns)
	}
	return out, errors.Join(errs...)
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
