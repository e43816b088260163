package natsedge

import (
	"encoding/json"
	"time"
)

// Heartbeat is what each edge replica reports every HeartbeatInterval on
// HeartbeatSubject(bucket, edge), so the daemon can show every replica's sync
// state. The daemon takes the edge name from the subject, not from Edge.
type Heartbeat struct {
	Edge            string `json:"edge"`
	Replica         string `json:"replica"`
	Version         string `json:"version,omitempty"` // the plugin release
	Bucket          string `json:"bucket"`
	Seq             uint64 `json:"seq"` // last applied stream sequence
	Synced          bool   `json:"synced"`
	HeardAgoMs      int64  `json:"heardAgoMs"` // -1: never heard from NATS
	RevokedSessions int    `json:"revokedSessions"`
	RevokedUsers    int    `json:"revokedUsers"`
	Groups          int    `json:"groups"`
	Rejected        uint64 `json:"rejected"`
	// Refusals counts the requests this replica refused since it started,
	// by policy reason code (not_allowed, session_revoked, …).
	Refusals map[string]uint64 `json:"refusals,omitempty"`
	At       int64             `json:"at"` // unix ms, the edge's clock
}

// publishHeartbeat queues the edge's Heartbeat on HeartbeatSubject: every
// HeartbeatInterval (onTick), and at once when the edge becomes synced
// (markSynced) or a hijack makes it unsynced (hijacked).
func (l *link) publishHeartbeat(now time.Time) {
	w := l.w
	l.lastBeat = now
	st := w.state.Stats()
	ws := w.Stats()
	hb := Heartbeat{
		Edge:            w.s.edge,
		Replica:         w.s.replica,
		Version:         w.s.version,
		Bucket:          w.s.bucket,
		Seq:             w.lastSeq,
		Synced:          w.state.Synced(),
		HeardAgoMs:      -1,
		RevokedSessions: st.Sessions,
		RevokedUsers:    st.Users,
		Groups:          st.Groups,
		Rejected:        st.Rejected + ws.Oversized + ws.Malformed,
		Refusals:        w.state.Refusals(),
		At:              now.UnixMilli(),
	}
	if lh := w.state.LastHeard(); !lh.IsZero() {
		hb.HeardAgoMs = now.Sub(lh).Milliseconds()
		if hb.HeardAgoMs < 0 {
			hb.HeardAgoMs = 0
		}
	}
	body, err := json.Marshal(hb)
	if err != nil {
		return
	}
	l.buf = appendPub(l.buf, HeartbeatSubject(w.s.bucket, w.s.edge), "", nil, body)
	w.count(func(st *Stats) { st.Heartbeats++ })
}
