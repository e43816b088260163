package bench

import (
	"testing"
	"time"
)

func TestParseProcStat(t *testing.T) {
	tests := []struct {
		line string
		want time.Duration
		err  bool
	}{
		// Real lines; the second has a command name with a space and a ')'.
		{"16050 (cat) R 16046 16046 26513 0 -1 4194304 124 0 0 0 7 3 0 0 20 0 1 0 1", 100 * time.Millisecond, false},
		{"812 (traefik-v3.6 (x) y) S 1 812 812 0 -1 4194560 9000 0 0 0 1234 567 0 0 20 0 12 0 100", 18010 * time.Millisecond, false},
		{"812 traefik S 1", 0, true},
		{"812 (traefik) S 1 2 3", 0, true},
		{"812 (traefik) S 1 812 812 0 -1 4194560 9000 0 0 0 12x4 567 0 0", 0, true},
	}
	for _, tt := range tests {
		got, err := parseProcStat(tt.line)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("parseProcStat(%q) = %s, %v; want %s, error %v", tt.line, got, err, tt.want, tt.err)
		}
	}
}

func TestParseMachineStat(t *testing.T) {
	busy, idle, err := parseMachineStat("cpu  276475 0 60413 94791 817 0 6761 144 0 0")
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Duration(276475+60413+6761+144) * clockTick; busy != want {
		t.Errorf("busy = %s, want %s", busy, want)
	}
	if want := time.Duration(94791+817) * clockTick; idle != want {
		t.Errorf("idle = %s, want %s", idle, want)
	}
	for _, bad := range []string{"", "cpu0 1 2 3 4 5 6 7 8", "cpu 1 2 3"} {
		if _, _, err := parseMachineStat(bad); err == nil {
			t.Errorf("parseMachineStat(%q) accepted", bad)
		}
	}
}

func TestPerRequestAccountsEveryMicrosecond(t *testing.T) {
	d := CPUSample{Procs: map[string]time.Duration{"traefik": 600 * time.Millisecond, "echo": 200 * time.Millisecond}, Busy: 1500 * time.Millisecond, Idle: 500 * time.Millisecond}
	got := perRequest(d, 300*time.Millisecond, 10000)
	want := CPUPerRequest{"traefik": 60, "echo": 20, "wrk": 30, "other": 40, "idle": 50}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v µs/request, want %v", k, got[k], v)
		}
	}
	if perRequest(d, 0, 0) != nil {
		t.Error("perRequest with no requests divided by zero")
	}
}
