package edgepub

import (
	"slices"
	"testing"
	"time"

	"github.com/edgepass/edgepass/daemon/internal/natstest"
	"github.com/edgepass/edgepass/plugin/token"
)

// TestAdminOverridesListsOnlyOverridesInForce: the console's groups page
// shows administrators' overrides, not cleared ones, and not the IdP lists
// published for users whose groups do not fit a cookie.
func TestAdminOverridesListsOnlyOverridesInForce(t *testing.T) {
	srv := natstest.Start(t)
	p := openPub(t, srv.JS, nil)
	ctx := natstest.Context(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(p.SetAdminGroups(ctx, "alice", []string{"admins", "staff"}))
	must(p.SetAdminGroups(ctx, "bob", []string{"staff"}))
	must(p.ClearGroups(ctx, "bob"))
	must(p.SetGroups(ctx, "carol", []string{"big", "list"})) // an IdP list, not an override
	must(p.RevokeUser(ctx, "dave", time.Now()))
	list, err := p.AdminOverrides(ctx)
	must(err)
	if len(list) != 1 {
		t.Fatalf("overrides = %+v, want alice's only", list)
	}
	o := list[0]
	if o.SubjectKey != token.SubjectKey("alice") || !slices.Equal(o.Groups, []string{"admins", "staff"}) || o.At.IsZero() || o.Exp.IsZero() {
		t.Errorf("override %+v", o)
	}
}
