package base64url

import "testing"

func TestValid(t *testing.T) {
	for _, c := range []struct {
		s    string
		want bool
	}{
		{"aZ09-_", true},
		{"abc", true},
		{"ab", false},      // too short
		{"abcdefg", false}, // too long
		{"ab.c", false},    // a NATS token separator
		{"ab*c", false},
		{"ab=c", false}, // padding
		{"ab c", false},
	} {
		if got := Valid(c.s, 3, 6); got != c.want {
			t.Errorf("Valid(%q, 3, 6) = %v, want %v", c.s, got, c.want)
		}
	}
}
