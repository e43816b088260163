package edgepass

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgepass/edgepass/plugin/edgestate"
)

// The request path is one lookup in a lineIndex: the exact Cookie (or
// Authorization) header line to a decision that may be served as is
// (docs/architecture.md, I4 and I5). ServeHTTP checks nothing else about it;
// decisions leave the index instead: on an edge-state change through
// edgestate.OnChange (I7), on expiry through the process-wide ticker (I9).
// The next request on such a line takes the slow path once and puts it back.

// TickInterval bounds how long past its expiry (exp + clockSkew) a token can
// still be served from the line index.
const TickInterval = time.Second

// idleIndex is how long an index can go without an insert before its group
// forgets it (emptied and marked, so its next insert joins again): Traefik
// makes new middlewares on every configuration change and drops the old ones.
const idleIndex = 2 * time.Minute

// maxIndexBytes bounds the header lines one index holds, whatever cacheSize
// says: lines run to 8 KiB, and a signed-in client can vary its other cookies
// to make as many distinct lines as it likes.
const maxIndexBytes = 16 << 20

// lineIndex is one middleware's map from header line to servable decision.
// Inserts and emptying are serialized by mu (docs/architecture.md, I8).
type lineIndex struct {
	m     sync.Map // line -> *decision: allowed, not revoked, keep set
	group *versionGroup
	max   int
	now   func() int64 // the middleware's clock, in unix seconds

	mu     sync.Mutex
	n      int
	bytes  int   // sum of the lengths of the lines held
	joined bool  // in group.members
	used   int64 // unix second of the last insert
	// bySession and bySubject find the lines of one session or one user,
	// so a change for them drops only their decisions.
	bySession map[string]map[string]bool
	bySubject map[string]map[string]bool
}

// versionGroup is every lineIndex whose decisions depend on one version
// counter (an edge state's, or localVersion without NATS): one per state,
// process-wide (docs/architecture.md, I2).
type versionGroup struct {
	version *atomic.Int64
	mu      sync.Mutex
	members map[*lineIndex]bool
}

var (
	// localVersion is the version of middlewares without NATS: nothing changes it.
	localVersion atomic.Int64

	versionGroupsMu sync.Mutex
	versionGroups   = map[*atomic.Int64]*versionGroup{}
	ticking         bool
)

// versionGroupFor returns the process-wide group for an edge state (nil: no NATS),
// hooking the state's changes to it on first use. Bounded: one per distinct
// NATS setting, plus one.
func versionGroupFor(state *edgestate.State) *versionGroup {
	version := &localVersion
	if state != nil {
		version = state.VersionCounter()
	}
	versionGroupsMu.Lock()
	defer versionGroupsMu.Unlock()
	g := versionGroups[version]
	if g == nil {
		g = &versionGroup{version: version, members: map[*lineIndex]bool{}}
		versionGroups[version] = g
		if state != nil {
			state.OnChange(g.changed)
		}
	}
	return g
}

func newLineIndex(g *versionGroup, size int, now func() int64) *lineIndex {
	return &lineIndex{group: g, max: size, now: now, bySession: map[string]map[string]bool{}, bySubject: map[string]map[string]bool{}}
}

// put stores e for line unless the edge state moved since e was computed or
// e has expired. The first put joins the group and starts the process-wide
// ticker; joining comes before the version check, both under x.mu
// (docs/architecture.md, I8).
func (x *lineIndex) put(line string, e *decision, now int64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if !x.joined {
		x.group.join(x)
		x.joined = true
	}
	x.used = now
	if e.version != x.group.version.Load() || e.expires <= now {
		return
	}
	if _, held := x.m.Load(line); !held && (x.n >= x.max || x.bytes+len(line) > maxIndexBytes) {
		x.clear() // replacing a line held already needs no room
	}
	if _, loaded := x.m.Swap(line, e); !loaded {
		x.n++
		x.bytes += len(line)
	}
	// A line always carries the same token, so its session and user
	// never change: adding it again is idempotent.
	if e.claims != nil {
		addLine(x.bySession, e.claims.SessionID, line)
	}
	addLine(x.bySubject, e.subjectKey, line)
}

func addLine(m map[string]map[string]bool, key, line string) {
	set := m[key]
	if set == nil {
		set = map[string]bool{}
		m[key] = set
	}
	set[line] = true
}

// clear empties the index; x.mu held.
func (x *lineIndex) clear() {
	clearMap(&x.m)
	x.n = 0
	x.bytes = 0
	x.bySession = map[string]map[string]bool{}
	x.bySubject = map[string]map[string]bool{}
}

// drop removes line and its reverse entries; x.mu held.
func (x *lineIndex) drop(line string) {
	v, loaded := x.m.LoadAndDelete(line)
	if !loaded {
		return
	}
	x.n--
	x.bytes -= len(line)
	e := v.(*decision)
	if e.claims != nil {
		dropLine(x.bySession, e.claims.SessionID, line)
	}
	dropLine(x.bySubject, e.subjectKey, line)
}

func dropLine(m map[string]map[string]bool, key, line string) {
	if set := m[key]; set != nil {
		delete(set, line)
		if len(set) == 0 {
			delete(m, key)
		}
	}
}

func (x *lineIndex) remove(line string) {
	x.mu.Lock()
	x.drop(line)
	x.mu.Unlock()
}

// forget drops the decisions a change can affect: one session's, one
// user's, or all of them.
func (x *lineIndex) forget(c edgestate.Change) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if c.All {
		x.clear()
		return
	}
	var lines []string
	for line := range x.bySession[c.SessionID] {
		lines = append(lines, line)
	}
	for line := range x.bySubject[c.SubjectKey] {
		lines = append(lines, line)
	}
	for _, line := range lines {
		x.drop(line)
	}
}

func (x *lineIndex) len() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.n
}

// expire drops the decisions of tokens expired by the middleware's clock. An
// index without an insert since before idleIndex is emptied and leaves the
// group (its next put joins again): Traefik drops middlewares on every
// configuration change. Inserts are the only sign of use the index sees (the
// fast path writes nothing), so a busy index is emptied once per idleIndex too.
func (x *lineIndex) expire() {
	now := x.now()
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.joined && now-x.used > int64(idleIndex/time.Second) {
		x.clear()
		x.joined = false
		x.group.leave(x)
		return
	}
	var expired []string
	x.m.Range(func(k, v any) bool {
		if v.(*decision).expires <= now {
			expired = append(expired, k.(string))
		}
		return true
	})
	for _, line := range expired {
		x.drop(line)
	}
}

// clearMap empties m with sync.Map.Clear where the Go that built Traefik has it
// (1.23+; Traefik v3.6 is built with 1.25), else with Range and Delete. The
// interface keeps this module at go 1.21, whose loop-variable semantics are
// the ones Yaegi implements (docs/architecture.md, I1).
func clearMap(m *sync.Map) {
	if c, ok := any(m).(interface{ Clear() }); ok {
		c.Clear()
		return
	}
	m.Range(func(k, _ any) bool {
		m.Delete(k)
		return true
	})
}

// join and leave are called with x.mu held (lock order: index, then group).
func (g *versionGroup) join(x *lineIndex) {
	g.mu.Lock()
	g.members[x] = true
	g.mu.Unlock()
	startTicker()
}

func (g *versionGroup) leave(x *lineIndex) {
	g.mu.Lock()
	delete(g.members, x)
	g.mu.Unlock()
}

// snapshot copies the member set: each member is then locked on its own,
// never while holding g.mu.
func (g *versionGroup) snapshot() []*lineIndex {
	g.mu.Lock()
	defer g.mu.Unlock()
	members := make([]*lineIndex, 0, len(g.members))
	for x := range g.members {
		members = append(members, x)
	}
	return members
}

// changed drops from every member the decisions a change of the edge state
// can affect.
func (g *versionGroup) changed(c edgestate.Change) {
	for _, x := range g.snapshot() {
		x.forget(c)
	}
}

// expire drops expired decisions from every member (the ticker).
func (g *versionGroup) expire() {
	for _, x := range g.snapshot() {
		x.expire()
	}
}

func (g *versionGroup) size() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.members)
}

// startTicker starts the process-wide goroutine that drops expired decisions
// once per TickInterval (docs/architecture.md, I9).
func startTicker() {
	versionGroupsMu.Lock()
	defer versionGroupsMu.Unlock()
	if !ticking {
		ticking = true
		go tick()
	}
}

func tick() {
	t := time.NewTicker(TickInterval)
	defer t.Stop()
	for range t.C {
		versionGroupsMu.Lock()
		all := make([]*versionGroup, 0, len(versionGroups))
		for _, g := range versionGroups {
			all = append(all, g)
		}
		versionGroupsMu.Unlock()
		for _, g := range all {
			g.expire()
		}
	}
}
