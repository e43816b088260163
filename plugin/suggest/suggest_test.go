package suggest

import "testing"

func TestDistance(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"", "abc", 3},
		{"abc", "", 3},
		{"lifetime", "lifetime", 0},
		{"lifetim", "lifetime", 1},
		{"lifetine", "lifetime", 1},
		{"liftime", "lifetime", 1},
		{"kitten", "sitting", 3},
		{"groups", "gruops", 2},
	} {
		if got := Distance(tt.a, tt.b); got != tt.want {
			t.Errorf("Distance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
		if got := Distance(tt.b, tt.a); got != tt.want {
			t.Errorf("Distance(%q, %q) = %d, want %d (symmetric)", tt.b, tt.a, got, tt.want)
		}
	}
}

func TestClosest(t *testing.T) {
	valid := []string{"allowedGroups", "allowedUsers", "audience", "audiences"}
	for _, tt := range []struct {
		name   string
		within int
		want   string
	}{
		{"allowedGroup", 3, "allowedGroups"},
		{"ALLOWEDUSERS", 0, "allowedUsers"}, // case is no edit
		{"audiense", 3, "audience"},
		{"audiencex", 3, "audience"},   // audiences is as near: the first wins
		{"audiencess", 1, "audiences"}, // audience is 2 away
		{"allowedGroupzzz", 3, "allowedGroups"},
		{"allowedGroupzzzz", 3, ""}, // 4 edits
		{"frobnicate", 3, ""},
		{"", 0, ""},
	} {
		if got := Closest(tt.name, valid, tt.within); got != tt.want {
			t.Errorf("Closest(%q, %d) = %q, want %q", tt.name, tt.within, got, tt.want)
		}
	}
	if got := Closest("x", nil, 3); got != "" {
		t.Errorf("Closest with no names = %q", got)
	}
}
