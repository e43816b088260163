package edgepass

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/edgepass/edgepass/plugin/policy"
)

// maxStripMemo bounds the memo of header-name decisions, so a client sending
// random header names cannot grow it.
const maxStripMemo = 1024

// commonHeaders seed the keep memo so ordinary requests never take the slow path.
var commonHeaders = []string{
	"Accept", "Accept-Encoding", "Accept-Language", "Authorization", "Cache-Control", "Connection",
	"Content-Length", "Content-Type", "Cookie", "Dnt", "Host", "If-Modified-Since", "If-None-Match",
	"Origin", "Pragma", "Priority", "Referer", "Sec-Ch-Ua", "Sec-Ch-Ua-Mobile", "Sec-Ch-Ua-Platform",
	"Sec-Fetch-Dest", "Sec-Fetch-Mode", "Sec-Fetch-Site", "Sec-Fetch-User", "Te", "Upgrade",
	"Upgrade-Insecure-Requests", "User-Agent", "X-Forwarded-For", "X-Forwarded-Host",
	"X-Forwarded-Port", "X-Forwarded-Proto", "X-Forwarded-Server", "X-Real-Ip", "X-Requested-With",
}

// refuseWrites is a writer every write to fails (a closed pipe): ServeHTTP
// passes it to http.Header.WriteSubset, which then returns nil only when it had
// nothing to write (docs/architecture.md, I6).
var refuseWrites = closedPipe()

func closedPipe() *io.PipeWriter {
	_, w := io.Pipe()
	w.Close()
	return w
}

// stripper decides, per exact header key as it appears in r.Header, whether the
// client header must go. Keys known to be harmless are memoized in an immutable
// map swapped atomically (keepMemo): each indexed decision carries the one that
// was current when its line was indexed, for ServeHTTP's header check
// (docs/architecture.md, I6). Identity headers are never in it.
type stripper struct {
	pol       *policy.Policy
	keepMemo  atomic.Value // map[string]bool: true = a client may send it
	stripMemo atomic.Value // map[string]bool: true = must be deleted
	mu        sync.Mutex
}

func newStripper(s *settings) *stripper {
	st := &stripper{pol: s.pol}
	memo := make(map[string]bool, len(commonHeaders))
	for _, h := range commonHeaders {
		if !st.decide(h) {
			memo[h] = true
		}
	}
	st.keepMemo.Store(memo)
	st.stripMemo.Store(map[string]bool{})
	return st
}

// decide is the slow path: policy.Strips (case-insensitive, "_" equal to "-").
func (st *stripper) decide(key string) bool {
	return st.pol.Strips(key)
}

// clean deletes every header of h a client may not send and returns the keep
// memo as it is afterwards (holding every name it kept, unless the memo is full).
func (st *stripper) clean(h http.Header) map[string]bool {
	keep := st.keepMemo.Load().(map[string]bool)
	for k := range h {
		if !keep[k] && !st.keep(k) {
			delete(h, k)
		}
	}
	return st.keepMemo.Load().(map[string]bool)
}

// keep reports whether a client may send key, remembering the decision while
// the memos are small. A name already known to be stripped costs one lookup
// (learn's larger frame is allocated only for names not seen before).
func (st *stripper) keep(key string) bool {
	if st.stripMemo.Load().(map[string]bool)[key] {
		return false
	}
	return st.learn(key)
}

func (st *stripper) learn(key string) bool {
	strip := st.decide(key)
	memo := &st.keepMemo
	if strip {
		memo = &st.stripMemo
	}
	st.mu.Lock()
	old := memo.Load().(map[string]bool)
	if !old[key] && len(old) < maxStripMemo {
		next := make(map[string]bool, len(old)+1)
		for k, v := range old {
			next[k] = v
		}
		next[key] = true
		memo.Store(next)
	}
	st.mu.Unlock()
	return !strip
}

// withoutCookie returns line minus every cookie called name or host ("" if
// none is left).
func withoutCookie(line, name, host string) string {
	parts := strings.Split(line, ";")
	kept := parts[:0]
	for _, p := range parts {
		t := strings.TrimSpace(p)
		if t == "" {
			continue
		}
		n, _, _ := strings.Cut(t, "=")
		if n = strings.TrimSpace(n); n == name || n == host {
			continue
		}
		kept = append(kept, t)
	}
	return strings.Join(kept, "; ")
}
