package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// LoadBalancer is a small HTTP load balancer in front of daemon replicas,
// as an ingress would be: round robin per request, no stickiness, and a
// replica that refuses connections is skipped (passively: it is left out
// for LBDownFor, then tried again). The request is forwarded unchanged
// (Host, X-Forwarded-*, cookies), so the daemons see what they would see
// behind a real balancer whose address is their publicURL.
type LoadBalancer struct {
	Port int
	URL  string

	backends  []*lbBackend
	transport *http.Transport
	ln        net.Listener
	srv       *http.Server

	mu      sync.Mutex
	next    int
	pinned  int // -1: round robin
	records []LBRecord
}

// LBBackend names one replica behind the balancer.
type LBBackend struct {
	Name string // "daemon-1"
	Addr string // host:port
}

type lbBackend struct {
	LBBackend
	downUntil time.Time // guarded by LoadBalancer.mu
}

// LBRecord is one request the balancer handled.
type LBRecord struct {
	At     time.Time
	Method string
	Path   string
	// RawQuery is the request's query (never printed: a callback's holds
	// the authorization code).
	RawQuery string
	// Backend served it ("" when none could: the client got 502).
	Backend string
	Status  int
	// Skipped are the replicas tried first that refused the connection.
	Skipped []string
	Err     string
}

func (r LBRecord) String() string {
	s := fmt.Sprintf("%s %s %s -> %s %d", r.At.Format("15:04:05.000"), r.Method, r.Path, orDefault(r.Backend, "(none)"), r.Status)
	if len(r.Skipped) > 0 {
		s += " (skipped " + strings.Join(r.Skipped, ", ") + ")"
	}
	if r.Err != "" {
		s += ": " + r.Err
	}
	return s
}

// LBDownFor is how long a replica that refused a connection is left out.
const LBDownFor = 2 * time.Second

// maxLBRecords bounds the request log.
const maxLBRecords = 10000

// StartLoadBalancer listens on 127.0.0.1:port and balances over backends.
func StartLoadBalancer(port int, backends []LBBackend) (*LoadBalancer, error) {
	if len(backends) == 0 {
		return nil, errors.New("harness: load balancer: no backends")
	}
	ln, err := net.Listen("tcp", hostPort(port))
	if err != nil {
		return nil, fmt.Errorf("harness: load balancer: listen on %d: %w", port, err)
	}
	lb := &LoadBalancer{
		Port:   port,
		URL:    baseURL(port),
		ln:     ln,
		pinned: -1,
		transport: &http.Transport{
			DialContext:           (&net.Dialer{Timeout: time.Second}).DialContext,
			MaxIdleConnsPerHost:   32,
			IdleConnTimeout:       30 * time.Second,
			ResponseHeaderTimeout: 30 * time.Second,
		},
	}
	for _, b := range backends {
		lb.backends = append(lb.backends, &lbBackend{LBBackend: b})
	}
	lb.srv = &http.Server{Handler: lb, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = lb.srv.Serve(ln) }()
	return lb, nil
}

// Close stops the balancer.
func (lb *LoadBalancer) Close() {
	if lb == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = lb.srv.Shutdown(ctx)
	lb.transport.CloseIdleConnections()
}

// Pin sends every request to the named replica while it accepts
// connections (the others only when it refuses); "" restores round robin.
// A diagnostic aid: it turns the balancer sticky, which the HA claim must
// not need.
func (lb *LoadBalancer) Pin(name string) error {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if name == "" {
		lb.pinned = -1
		return nil
	}
	for i, b := range lb.backends {
		if b.Name == name {
			lb.pinned = i
			return nil
		}
	}
	return fmt.Errorf("harness: load balancer: no backend %q", name)
}

// MarkReady clears a replica's down mark at once, as a balancer does when
// the replica's readiness probe passes again (a restarted daemon).
func (lb *LoadBalancer) MarkReady(name string) error {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	for _, b := range lb.backends {
		if b.Name == name {
			b.downUntil = time.Time{}
			return nil
		}
	}
	return fmt.Errorf("harness: load balancer: no backend %q", name)
}

// Records returns the requests handled so far whose path starts with
// prefix ("" = all), oldest first.
func (lb *LoadBalancer) Records(prefix string) []LBRecord {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	var out []LBRecord
	for _, r := range lb.records {
		if strings.HasPrefix(r.Path, prefix) {
			out = append(out, r)
		}
	}
	return out
}

// Find returns the latest request on exactly path whose query satisfies
// match (a login's /login carries its rd=, a callback its state=).
func (lb *LoadBalancer) Find(path string, match func(query url.Values) bool) (LBRecord, bool) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	for i := len(lb.records) - 1; i >= 0; i-- {
		r := lb.records[i]
		if r.Path != path {
			continue
		}
		if q, err := url.ParseQuery(r.RawQuery); err == nil && match(q) {
			return r, true
		}
	}
	return LBRecord{}, false
}

// Last returns the latest request whose path starts with prefix.
func (lb *LoadBalancer) Last(prefix string) (LBRecord, bool) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	for i := len(lb.records) - 1; i >= 0; i-- {
		if strings.HasPrefix(lb.records[i].Path, prefix) {
			return lb.records[i], true
		}
	}
	return LBRecord{}, false
}

// Summary counts the requests each replica served, for diagnostics.
func (lb *LoadBalancer) Summary() string {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	counts := map[string]int{}
	failed := 0
	for _, r := range lb.records {
		if r.Backend == "" {
			failed++
		} else {
			counts[r.Backend]++
		}
	}
	var parts []string
	for _, b := range lb.backends {
		parts = append(parts, fmt.Sprintf("%s (%s) %d", b.Name, b.Addr, counts[b.Name]))
	}
	return fmt.Sprintf("load balancer %s: served by %s; %d without a replica", lb.URL, strings.Join(parts, ", "), failed)
}

// order is the list of replicas to try for one request: round robin (or
// the pinned one first), replicas marked down last.
func (lb *LoadBalancer) order() []*lbBackend {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	n := len(lb.backends)
	first := lb.pinned
	if first < 0 {
		first = lb.next
		lb.next = (lb.next + 1) % n
	}
	now := time.Now()
	var up, down []*lbBackend
	for i := 0; i < n; i++ {
		b := lb.backends[(first+i)%n]
		if now.Before(b.downUntil) {
			down = append(down, b)
		} else {
			up = append(up, b)
		}
	}
	return append(up, down...)
}

func (lb *LoadBalancer) markDown(b *lbBackend) {
	lb.mu.Lock()
	b.downUntil = time.Now().Add(LBDownFor)
	lb.mu.Unlock()
}

func (lb *LoadBalancer) record(r LBRecord) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if len(lb.records) >= maxLBRecords {
		lb.records = append(lb.records[:0:0], lb.records[len(lb.records)/2:]...)
	}
	lb.records = append(lb.records, r)
}

// hopHeaders are not forwarded (RFC 9110, section 7.6.1).
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// ServeHTTP forwards the request to the next replica; a replica that
// refuses the connection is marked down and the next one is tried (the
// request was not sent, so this is safe for any method).
func (lb *LoadBalancer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := LBRecord{At: time.Now(), Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		rec.Err = "read request body: " + err.Error()
		rec.Status = http.StatusBadRequest
		lb.record(rec)
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	var lastErr error
	for _, b := range lb.order() {
		out := r.Clone(r.Context())
		out.RequestURI = ""
		out.URL.Scheme = "http"
		out.URL.Host = b.Addr
		out.Host = r.Host
		out.Body = io.NopCloser(bytes.NewReader(body))
		out.ContentLength = int64(len(body))
		if len(body) == 0 {
			out.Body = http.NoBody
		}
		for _, h := range hopHeaders {
			out.Header.Del(h)
		}
		resp, err := lb.transport.RoundTrip(out)
		if err != nil {
			lastErr = err
			var op *net.OpError
			if errors.As(err, &op) && op.Op == "dial" {
				lb.markDown(b)
				rec.Skipped = append(rec.Skipped, b.Name)
				continue
			}
			// Sent, then lost (the replica died mid-request): the client
			// sees a failure, as behind a real balancer.
			rec.Backend = b.Name
			break
		}
		for _, h := range hopHeaders {
			resp.Header.Del(h)
		}
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
		resp.Body.Close()
		rec.Backend, rec.Status = b.Name, resp.StatusCode
		lb.record(rec)
		return
	}
	rec.Status = http.StatusBadGateway
	if lastErr != nil {
		rec.Err = lastErr.Error()
	}
	lb.record(rec)
	http.Error(w, "load balancer: no replica answered", http.StatusBadGateway)
}
