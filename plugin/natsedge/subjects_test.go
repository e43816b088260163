package natsedge

import (
	"strings"
	"testing"
)

func TestValidEdgeName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"edge", true},
		{"traefik-eu_1", true},
		{strings.Repeat("a", 64), true},
		{"", false},
		{strings.Repeat("a", 65), false},
		// Attack: a name with subject syntax would widen the edge's
		// permissions to other edges' inboxes, consumers or heartbeats.
		{"a.b", false},
		{"*", false},
		{">", false},
		{"a b", false},
		{"a\tb", false},
		{"é", false},
		{"a/b", false},
	}
	for _, tt := range tests {
		if got := ValidEdgeName(tt.name); got != tt.ok {
			t.Errorf("ValidEdgeName(%q) = %v, want %v", tt.name, got, tt.ok)
		}
	}
}

func TestSubjectHelpers(t *testing.T) {
	if got := InboxPrefix("a"); got != "_EDGEPASS.a" {
		t.Errorf("InboxPrefix = %s", got)
	}
	if got := ConsumerName("a", 7); got != "edge_a_7" {
		t.Errorf("ConsumerName = %s", got)
	}
	if got := HeartbeatSubject("b", "a"); got != "edgepass.heartbeat.b.a" {
		t.Errorf("HeartbeatSubject = %s", got)
	}
	if got := HeartbeatWildcard("b"); got != "edgepass.heartbeat.b.*" {
		t.Errorf("HeartbeatWildcard = %s", got)
	}
	// Distinct edges never share a consumer name.
	seen := map[string]string{}
	for _, e := range []string{"a", "a_1", "a_1_0", "b", "edge", "a-1"} {
		for n := 0; n < ConsumerSlots; n++ {
			c := ConsumerName(e, n)
			if other, ok := seen[c]; ok && other != e {
				t.Fatalf("edges %q and %q share consumer name %s", other, e, c)
			}
			seen[c] = e
		}
	}
}

// TestEdgePermissionsAreExactlyTheContract pins the table of
// docs/contracts.md ("NATS: who may do what").
func TestEdgePermissionsAreExactlyTheContract(t *testing.T) {
	pub, sub := EdgePermissions("B", "e1")
	want := []string{"$JS.API.STREAM.INFO.KV_B", "$JS.API.DIRECT.GET.KV_B"}
	for _, n := range []string{"0", "1", "2", "3", "4", "5", "6", "7"} {
		want = append(want, "$JS.API.CONSUMER.CREATE.KV_B.edge_e1_"+n)
	}
	for _, n := range []string{"0", "1", "2", "3", "4", "5", "6", "7"} {
		want = append(want, "$JS.API.CONSUMER.DELETE.KV_B.edge_e1_"+n)
	}
	for _, n := range []string{"0", "1", "2", "3", "4", "5", "6", "7"} {
		want = append(want, "$JS.FC.KV_B.edge_e1_"+n+".*")
	}
	want = append(want, "edgepass.heartbeat.B.e1")
	want = append(want, "edgepass.assert.B.e1")
	if strings.Join(pub, "\n") != strings.Join(want, "\n") {
		t.Fatalf("publish =\n%s\nwant\n%s", strings.Join(pub, "\n"), strings.Join(want, "\n"))
	}
	if len(sub) != 1 || sub[0] != "_EDGEPASS.e1.>" {
		t.Fatalf("subscribe = %v", sub)
	}
	// Attack surface: nothing broader than the edge's own names.
	for _, p := range append(pub, sub...) {
		for _, bad := range []string{"_INBOX", "$KV.", "CONSUMER.INFO", "CONSUMER.LIST", "CONSUMER.NAMES", "MSG.GET"} {
			if strings.Contains(p, bad) {
				t.Errorf("permission %s grants %s", p, bad)
			}
		}
		// Direct gets on the edge bucket's stream only (its facts are
		// public to edges), never by subject, never another stream.
		if strings.Contains(p, "DIRECT.GET") && p != "$JS.API.DIRECT.GET.KV_B" {
			t.Errorf("permission %s grants a direct get beyond the edge bucket's stream", p)
		}
		if strings.HasSuffix(p, ".>") && p != "_EDGEPASS.e1.>" || p == "$JS.API.CONSUMER.CREATE.KV_B" {
			t.Errorf("permission %s is broader than the edge's own subjects", p)
		}
	}
}
