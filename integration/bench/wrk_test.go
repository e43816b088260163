package bench

import (
	"strings"
	"testing"
	"time"
)

// Real outputs of wrk 4.1.0 (Debian) with --latency.
const (
	wrkOK = `Running 2s test @ http://127.0.0.1:18089/ok
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   598.07us    1.18ms  11.32ms   88.12%
    Req/Sec    51.92k     5.50k   66.39k    72.50%
  Latency Distribution
     50%  119.00us
     75%  341.00us
     90%    2.12ms
     99%    5.59ms
  206507 requests in 2.00s, 23.24MB read
Requests/sec: 103038.61
Transfer/sec:     11.60MB
`
	wrkNon2xx = `Running 1s test @ http://127.0.0.1:18089/401
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    90.42us  168.82us   3.80ms   96.91%
    Req/Sec    51.04k     6.09k   56.88k    90.00%
  Latency Distribution
     50%   71.00us
     75%   91.00us
     90%  112.00us
     99%  710.00us
  50671 requests in 1.00s, 4.11MB read
  Non-2xx or 3xx responses: 50671
Requests/sec:  50627.56
Transfer/sec:      4.10MB
`
	wrkTimeouts = `Running 2s test @ http://127.0.0.1:18089/slow
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     0.00us    0.00us   0.00us    -nan%
    Req/Sec     3.00      0.00     3.00    100.00%
  Latency Distribution
     50%    0.00us
     75%    0.00us
     90%    0.00us
     99%    0.00us
  4 requests in 2.01s, 472.00B read
  Socket errors: connect 0, read 0, write 0, timeout 4
Requests/sec:      1.99
Transfer/sec:     235.32B
`
	wrkSeconds = `Running 3s test @ http://127.0.0.1:18089/slow
  1 threads and 2 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.20s     1.01ms   1.20s    75.00%
    Req/Sec     1.00      0.00     1.00    100.00%
  Latency Distribution
     50%    1.20s 
     75%    1.20s 
     90%    1.20s 
     99%    1.20s 
  4 requests in 3.01s, 472.00B read
Requests/sec:      1.33
Transfer/sec:     156.85B
`
	// Without --latency wrk prints no distribution.
	wrkNoLatency = `Running 1s test @ http://127.0.0.1:18089/ok
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     0.88ms    1.49ms  14.07ms   87.31%
    Req/Sec    51.38k     6.43k   60.95k    75.00%
  102210 requests in 1.00s, 11.50MB read
Requests/sec: 101860.92
Transfer/sec:     11.46MB
`
	wrkRefused = "unable to connect to 127.0.0.1:18090 Connection refused\n"
)

func TestParseWrk(t *testing.T) {
	tests := []struct {
		name      string
		out       string
		want      WrkResult
		wantErr   string // substring; "" = no error
		wantClean string // substring of Clean's error; "" = clean
	}{
		{
			name: "ok",
			out:  wrkOK,
			want: WrkResult{Requests: 206507, Duration: 2 * time.Second, RequestsPerS: 103038.61,
				P50: 119 * time.Microsecond, P75: 341 * time.Microsecond, P90: 2120 * time.Microsecond, P99: 5590 * time.Microsecond},
		},
		{
			name: "non-2xx responses",
			out:  wrkNon2xx,
			want: WrkResult{Requests: 50671, Duration: time.Second, RequestsPerS: 50627.56,
				P50: 71 * time.Microsecond, P75: 91 * time.Microsecond, P90: 112 * time.Microsecond, P99: 710 * time.Microsecond,
				Non2xx3xx: 50671},
			wantClean: "not 2xx/3xx",
		},
		{
			name:      "socket timeouts",
			out:       wrkTimeouts,
			want:      WrkResult{Requests: 4, Duration: 2010 * time.Millisecond, RequestsPerS: 1.99, SocketErrors: 4},
			wantClean: "socket errors",
		},
		{
			name: "latencies in seconds with trailing blanks",
			out:  wrkSeconds,
			want: WrkResult{Requests: 4, Duration: 3010 * time.Millisecond, RequestsPerS: 1.33,
				P50: 1200 * time.Millisecond, P75: 1200 * time.Millisecond, P90: 1200 * time.Millisecond, P99: 1200 * time.Millisecond},
		},
		{name: "no latency distribution", out: wrkNoLatency, wantErr: "50% latency"},
		{name: "connection refused", out: wrkRefused, wantErr: "Requests/sec"},
		{name: "empty", out: "", wantErr: "requests in"},
		{name: "garbage number", out: strings.Replace(wrkOK, "103038.61", "1o3038", 1), wantErr: "bad Requests/sec"},
		{name: "unknown unit", out: strings.Replace(wrkOK, "5.59ms", "5.59xs", 1), wantErr: "bad 99% latency"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseWrk(tt.out)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseWrk error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseWrk: %v", err)
			}
			if !durationsClose(got.Duration, tt.want.Duration) {
				t.Errorf("Duration = %s, want %s", got.Duration, tt.want.Duration)
			}
			got.Duration = tt.want.Duration
			for _, p := range []struct {
				name      string
				got, want *time.Duration
			}{{"P50", &got.P50, &tt.want.P50}, {"P75", &got.P75, &tt.want.P75}, {"P90", &got.P90, &tt.want.P90}, {"P99", &got.P99, &tt.want.P99}} {
				if !durationsClose(*p.got, *p.want) {
					t.Errorf("%s = %s, want %s", p.name, *p.got, *p.want)
				}
				*p.got = *p.want
			}
			if got != tt.want {
				t.Errorf("ParseWrk = %+v, want %+v", got, tt.want)
			}
			err = got.Clean()
			switch {
			case tt.wantClean == "" && err != nil:
				t.Errorf("Clean() = %v, want nil", err)
			case tt.wantClean != "" && (err == nil || !strings.Contains(err.Error(), tt.wantClean)):
				t.Errorf("Clean() = %v, want an error containing %q", err, tt.wantClean)
			}
		})
	}
}

// durationsClose tolerates float rounding of "2.12ms" into nanoseconds.
func durationsClose(a, b time.Duration) bool {
	d := a - b
	return d > -time.Microsecond/100 && d < time.Microsecond/100
}

func TestParseWrkDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{"119.00us", 119 * time.Microsecond, false},
		{"2.12ms", 2120 * time.Microsecond, false},
		{"1.20s", 1200 * time.Millisecond, false},
		{"2.00m", 2 * time.Minute, false},
		{"1.00h", time.Hour, false},
		{"12", 0, true},
		{"us", 0, true},
		{"-1.0ms", 0, true},
		{"", 0, true},
	}
	for _, tt := range tests {
		got, err := parseWrkDuration(tt.in)
		if (err != nil) != tt.err || (!tt.err && !durationsClose(got, tt.want)) {
			t.Errorf("parseWrkDuration(%q) = %s, %v; want %s, error %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestWrkLoadArgs(t *testing.T) {
	l := WrkLoad{URL: "http://127.0.0.1:1/x", Threads: 2, Connections: 32, Duration: 10 * time.Second, Headers: []string{"Cookie: a=b"}}
	got := strings.Join(l.Args(), " ")
	want := "-t2 -c32 -d10s --timeout 5s --latency -H Cookie: a=b http://127.0.0.1:1/x"
	if got != want {
		t.Errorf("Args() = %q, want %q", got, want)
	}
}
