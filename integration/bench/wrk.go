package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// WrkResult is what one wrk run measured, parsed from its --latency output.
type WrkResult struct {
	Requests      int64
	Duration      time.Duration // wall time wrk reports ("in 10.00s")
	RequestsPerS  float64
	P50, P75, P90 time.Duration
	P99           time.Duration
	// Non2xx3xx counts responses with another status: for a benchmark of an
	// authenticated route these mean the middleware refused the session.
	Non2xx3xx int64
	// SocketErrors sums connect, read, write and timeout errors.
	SocketErrors int64
	// CPU is wrk's own user+system time (set by RunWrk, not parsed).
	CPU time.Duration `json:"-"`
}

// Clean reports whether every request succeeded; a throughput measured on
// refusals or errors compares nothing.
func (r WrkResult) Clean() error {
	if r.Requests == 0 {
		return errors.New("wrk completed no request")
	}
	if r.Non2xx3xx > 0 {
		return fmt.Errorf("%d of %d responses were not 2xx/3xx", r.Non2xx3xx, r.Requests)
	}
	if r.SocketErrors > 0 {
		return fmt.Errorf("%d socket errors (connect/read/write/timeout) in %d requests", r.SocketErrors, r.Requests)
	}
	return nil
}

// ParseWrk parses the output of `wrk --latency`. It needs the request
// count, Requests/sec and the 50% and 99% latency lines; anything missing
// is an error naming it, so a changed wrk output format fails loudly.
func ParseWrk(out string) (WrkResult, error) {
	var r WrkResult
	var haveRPS, haveReq bool
	haveP := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		f := strings.Fields(line)
		switch {
		case strings.HasPrefix(line, "Requests/sec:") && len(f) == 2:
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				return r, fmt.Errorf("wrk output: bad Requests/sec %q: %w", f[1], err)
			}
			r.RequestsPerS, haveRPS = v, true
		case len(f) >= 4 && f[1] == "requests" && f[2] == "in":
			// "206507 requests in 2.00s, 23.24MB read"
			n, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return r, fmt.Errorf("wrk output: bad request count in %q: %w", line, err)
			}
			d, err := parseWrkDuration(strings.TrimSuffix(f[3], ","))
			if err != nil {
				return r, fmt.Errorf("wrk output: bad duration in %q: %w", line, err)
			}
			r.Requests, r.Duration, haveReq = n, d, true
		case len(f) == 2 && (f[0] == "50%" || f[0] == "75%" || f[0] == "90%" || f[0] == "99%"):
			d, err := parseWrkDuration(f[1])
			if err != nil {
				return r, fmt.Errorf("wrk output: bad %s latency %q: %w", f[0], f[1], err)
			}
			switch f[0] {
			case "50%":
				r.P50 = d
			case "75%":
				r.P75 = d
			case "90%":
				r.P90 = d
			case "99%":
				r.P99 = d
			}
			haveP[f[0]] = true
		case strings.HasPrefix(line, "Non-2xx or 3xx responses:") && len(f) == 5:
			n, err := strconv.ParseInt(f[4], 10, 64)
			if err != nil {
				return r, fmt.Errorf("wrk output: bad non-2xx count in %q: %w", line, err)
			}
			r.Non2xx3xx = n
		case strings.HasPrefix(line, "Socket errors:"):
			// "Socket errors: connect 0, read 0, write 0, timeout 4"
			for i := 2; i+1 < len(f); i += 2 {
				n, err := strconv.ParseInt(strings.TrimSuffix(f[i+1], ","), 10, 64)
				if err != nil {
					return r, fmt.Errorf("wrk output: bad socket error count in %q: %w", line, err)
				}
				r.SocketErrors += n
			}
		}
	}
	var missing []string
	if !haveReq {
		missing = append(missing, `"N requests in T"`)
	}
	if !haveRPS {
		missing = append(missing, "Requests/sec")
	}
	for _, p := range []string{"50%", "99%"} {
		if !haveP[p] {
			missing = append(missing, p+" latency (was --latency passed?)")
		}
	}
	if len(missing) > 0 {
		return r, fmt.Errorf("wrk output lacks %s:\n%s", strings.Join(missing, ", "), out)
	}
	return r, nil
}

// parseWrkDuration reads wrk's time format: a number with the unit us, ms,
// s, m or h ("119.00us", "2.12ms", "1.20s").
func parseWrkDuration(s string) (time.Duration, error) {
	units := []struct {
		suffix string
		unit   time.Duration
	}{{"us", time.Microsecond}, {"ms", time.Millisecond}, {"s", time.Second}, {"m", time.Minute}, {"h", time.Hour}}
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseFloat(num, 64)
			if err != nil || v < 0 {
				return 0, fmt.Errorf("not a wrk duration: %q", s)
			}
			return time.Duration(v * float64(u.unit)), nil
		}
	}
	return 0, fmt.Errorf("not a wrk duration (no unit): %q", s)
}

// WrkLoad is one wrk invocation.
type WrkLoad struct {
	Bin         string // default "wrk"
	URL         string
	Threads     int
	Connections int
	Duration    time.Duration
	Headers     []string // "Name: value"
}

// Args are wrk's command-line arguments for the load.
func (l WrkLoad) Args() []string {
	args := []string{
		"-t" + strconv.Itoa(l.Threads),
		"-c" + strconv.Itoa(l.Connections),
		"-d" + strconv.Itoa(int(l.Duration.Round(time.Second)/time.Second)) + "s",
		"--timeout", "5s",
		"--latency",
	}
	for _, h := range l.Headers {
		args = append(args, "-H", h)
	}
	return append(args, l.URL)
}

// RunWrk runs wrk and parses its output; the error quotes wrk's output.
func RunWrk(ctx context.Context, l WrkLoad) (WrkResult, string, error) {
	bin := l.Bin
	if bin == "" {
		bin = "wrk"
	}
	if l.Duration < time.Second {
		return WrkResult{}, "", fmt.Errorf("wrk: duration %s is under wrk's 1s resolution", l.Duration)
	}
	ctx, cancel := context.WithTimeout(ctx, l.Duration+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, l.Args()...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return WrkResult{}, out.String(), fmt.Errorf("wrk against %s failed: %v\n%s", l.URL, err, strings.TrimSpace(out.String()))
	}
	r, err := ParseWrk(out.String())
	if cmd.ProcessState != nil {
		r.CPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	return r, out.String(), err
}
