package session

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// revokeLog records the calls Revoker makes, in order.
type revokeLog struct {
	calls             []string
	edgeErr, storeErr error
}

func (l *revokeLog) RevokeSession(_ context.Context, sid string, exp time.Time) error {
	l.calls = append(l.calls, fmt.Sprintf("edge %s %d", sid, exp.Unix()))
	return l.edgeErr
}

func (l *revokeLog) Delete(_ context.Context, id string) error {
	l.calls = append(l.calls, "delete "+id)
	return l.storeErr
}

func (l *revokeLog) Revoked(kind string) { l.calls = append(l.calls, "count "+kind) }

func TestRevokerPublishesBeforeDeleting(t *testing.T) {
	sid := NewID()
	exp := time.Unix(1_700_000_000, 0)
	cases := map[string]struct {
		edgeErr, storeErr error
		wantErr           string
		want              []string
	}{
		"ok": {want: []string{"edge " + sid + " 1700000000", "delete " + sid, "count logout"}},
		// Deleting first would lose the session while edges still accept its tokens.
		"edge down":     {edgeErr: errors.New("nats down"), wantErr: "publish revocation of session " + Short(sid), want: []string{"edge " + sid + " 1700000000"}},
		"already gone":  {storeErr: fmt.Errorf("%w: gone", ErrNotFound), want: []string{"edge " + sid + " 1700000000", "delete " + sid, "count logout"}},
		"store failure": {storeErr: errors.New("disk"), wantErr: "delete session " + Short(sid), want: []string{"edge " + sid + " 1700000000", "delete " + sid}},
	}
	for name, c := range cases {
		l := &revokeLog{edgeErr: c.edgeErr, storeErr: c.storeErr}
		err := Revoker{Edge: l, Store: l, Metrics: l}.Revoke(context.Background(), sid, exp, "logout")
		if (c.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.wantErr)) {
			t.Errorf("%s: err %v, want %q", name, err, c.wantErr)
		}
		if !slices.Equal(l.calls, c.want) {
			t.Errorf("%s: calls %q, want %q", name, l.calls, c.want)
		}
	}
	// Metrics are optional.
	l := &revokeLog{}
	if err := (Revoker{Edge: l, Store: l}).Revoke(context.Background(), sid, exp, "x"); err != nil || len(l.calls) != 2 {
		t.Errorf("without metrics: %v, calls %q", err, l.calls)
	}
}

func TestShort(t *testing.T) {
	for id, want := range map[string]string{"": "", "abc": "abc", "0123456789": "01234567"} {
		if got := Short(id); got != want {
			t.Errorf("Short(%q) = %q, want %q", id, got, want)
		}
	}
}
