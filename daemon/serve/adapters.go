package serve

import (
	"context"
	"errors"

	"github.com/edgepass/edgepass/daemon/admin"
	"github.com/edgepass/edgepass/daemon/edgepub"
	"github.com/edgepass/edgepass/daemon/natsserver"
	"github.com/edgepass/edgepass/daemon/session"
)

// storeAdapter gives *session.Store the shape oidcflow and admin consume:
// a missing session is (nil, nil), List has no filter.
type storeAdapter struct{ st *session.Store }

func (a storeAdapter) Put(ctx context.Context, s *session.Session) error { return a.st.Put(ctx, s) }

func (a storeAdapter) Get(ctx context.Context, id string) (*session.Session, error) {
	s, _, err := a.st.Get(ctx, id)
	if errors.Is(err, session.ErrNotFound) {
		return nil, nil
	}
	return s, err
}

func (a storeAdapter) Delete(ctx context.Context, id string) error {
	if err := a.st.Delete(ctx, id); err != nil && !errors.Is(err, session.ErrNotFound) {
		return err
	}
	return nil
}

func (a storeAdapter) List(ctx context.Context) ([]session.Session, error) {
	return a.st.List(ctx, "")
}

// edgeLister maps the heartbeat collector onto admin.EdgeLister.
type edgeLister struct{ h *edgepub.Heartbeats }

func (e edgeLister) Edges() []admin.EdgeStatus {
	list := e.h.List()
	out := make([]admin.EdgeStatus, 0, len(list))
	for _, s := range list {
		out = append(out, admin.EdgeStatus{
			Replica: s.Replica, Bucket: s.Bucket, Seq: s.Seq, Synced: s.Synced,
			HeardAgoMs: s.HeardAgoMs, RevokedSessions: s.RevokedSessions,
			RevokedUsers: s.RevokedUsers, Groups: s.Groups, Rejected: int(min(s.Rejected, 1<<31-1)),
			At: s.At, LastSeen: s.Received,
		})
	}
	return out
}

// natsPinger is the readiness check of the NATS connection.
type natsPinger struct{ c *natsserver.Conn }

func (p natsPinger) Ping(ctx context.Context) error {
	if err := p.c.Ready(); err != nil {
		return err
	}
	return p.c.NC.FlushWithContext(ctx)
}

// adminEdge marks groups set through the admin API as an administrator's
// override, which logins and refreshes keep; the rest passes through.
type adminEdge struct{ *edgepub.Publisher }

// SetGroups implements admin.EdgePublisher.
func (a adminEdge) SetGroups(ctx context.Context, subject string, groups []string) error {
	return a.Publisher.SetAdminGroups(ctx, subject, groups)
}
