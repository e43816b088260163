package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgepass/edgepass/integration/harness"
	"github.com/edgepass/edgepass/plugin/edgestate"
)

// ChurnThroughput compares the plugin's throughput while the edge state is
// quiet with its throughput while ChangesPerS edge-state changes for other
// users arrive (session revocations of sessions nobody uses): rounds
// alternate, and the ratio is the median of the per-round ratios. The CPU
// per request of each run says where a difference goes (Traefik applying
// facts, the daemon's NATS storing them, or "other": the publisher here).
type ChurnThroughput struct {
	ChangesPerS float64 // achieved
	Quiet       []float64
	Churn       []float64
	QuietCPU    []CPUPerRequest
	ChurnCPU    []CPUPerRequest
	Ratio       float64 // median of the per-round churn/quiet ratios
}

// MeasureChurn runs rounds of quiet and churning plugin load, alternately.
func MeasureChurn(ctx context.Context, s *Stack, e *Edge, sess *Session, l Load, perS int, outDir string) (ChurnThroughput, error) {
	var res ChurnThroughput
	var cpu CPUPerRequest // of the last run
	run := func(label string, round int) (float64, error) {
		before := sampleCPU(s.pids())
		r, raw, err := RunWrk(ctx, variantLoad(s, sess, Plugin, l, l.Duration))
		cpu = perRequest(sampleCPU(s.pids()).Sub(before), r.CPU, r.Requests)
		_ = os.WriteFile(filepath.Join(outDir, fmt.Sprintf("plugin-%s-%d.txt", label, round)), []byte(raw), 0o644)
		if err == nil {
			err = r.Clean()
		}
		return r.RequestsPerS, err
	}
	value := []byte(fmt.Sprintf(`{"exp":%d}`, time.Now().Add(time.Hour).Unix()))
	var published atomic.Int64
	churn := func(stop <-chan struct{}) {
		t := time.NewTicker(time.Second / time.Duration(perS))
		defer t.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			if _, err := e.JS.PublishAsync(fmt.Sprintf("$KV.%s.%s%s", e.KV.Bucket(), edgestate.PrefixRevokeSession, harness.RandomSecret(32)), value); err == nil {
				published.Add(1)
			}
		}
	}
	rounds := l.Rounds
	if rounds < 3 {
		rounds = 3
	}
	var churnTime time.Duration
	for round := 1; round <= rounds; round++ {
		q, err := run("quiet", round)
		if err != nil {
			return res, fmt.Errorf("bench: quiet round %d: %w", round, err)
		}
		res.Quiet = append(res.Quiet, q)
		res.QuietCPU = append(res.QuietCPU, cpu)
		time.Sleep(l.Pause)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); churn(stop) }()
		start := time.Now()
		c, err := run("churn", round)
		close(stop)
		wg.Wait()
		churnTime += time.Since(start)
		if err != nil {
			return res, fmt.Errorf("bench: churn round %d: %w", round, err)
		}
		res.Churn = append(res.Churn, c)
		res.ChurnCPU = append(res.ChurnCPU, cpu)
		time.Sleep(l.Pause)
	}
	res.ChangesPerS = float64(published.Load()) / churnTime.Seconds()
	res.Ratio = median(res.PerRound())
	return res, nil
}

// PerRound is each round's churn/quiet ratio: a round's two runs are a
// few seconds apart, so a burst of other work on the machine moves both.
func (c ChurnThroughput) PerRound() []float64 {
	var out []float64
	for i := 0; i < len(c.Churn) && i < len(c.Quiet); i++ {
		if c.Quiet[i] > 0 {
			out = append(out, c.Churn[i]/c.Quiet[i])
		}
	}
	return out
}

// MedianCPU is the median over runs of one process's CPU µs per request.
func MedianCPU(runs []CPUPerRequest, proc string) float64 {
	var v []float64
	for _, r := range runs {
		if x, ok := r[proc]; ok {
			v = append(v, x)
		}
	}
	return median(v)
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

// DaemonCapacity is what one daemon sustains: complete logins through the
// real OIDC flow (browser, provider form, callback) per second, and
// ForwardAuth /verify answers per second for a signed-in session.
type DaemonCapacity struct {
	LoginsPerS   float64
	Logins       int
	LoginP50     time.Duration
	LoginP99     time.Duration
	VerifyPerS   float64
	VerifyP99    time.Duration
	LoginWorkers int
}

// MeasureDaemon signs in repeatedly with workers concurrent browsers for d,
// then drives /verify with wrk.
func MeasureDaemon(ctx context.Context, s *Stack, sess *Session, l Load, workers int, d time.Duration) (DaemonCapacity, error) {
	res := DaemonCapacity{LoginWorkers: workers}
	var mu sync.Mutex
	var took []time.Duration
	var firstErr error
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) && ctx.Err() == nil {
				start := time.Now()
				target := s.TraefikURL + Plugin.Path + "/login-bench?n=" + harness.RandomSecret(4)
				_, _, err := harness.SignInAt(s.Provider.Issuer, target, harness.AliceUser, harness.AlicePassword)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				} else if err == nil {
					took = append(took, time.Since(start))
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return res, fmt.Errorf("bench: login: %w", firstErr)
	}
	lat := summarize(took, 0)
	res.Logins, res.LoginP50, res.LoginP99 = len(took), lat.P50, lat.P99
	res.LoginsPerS = float64(len(took)) / d.Seconds()

	r, _, err := RunWrk(ctx, WrkLoad{
		Bin: l.Wrk, URL: s.Daemon.PublicURL + "/verify", Threads: l.Threads, Connections: l.Connections, Duration: l.Duration,
		Headers: []string{sess.CookieHeader(), "Accept: application/json", "X-Forwarded-Method: GET"},
	})
	if err == nil {
		err = r.Clean()
	}
	if err != nil {
		return res, fmt.Errorf("bench: /verify load: %w", err)
	}
	res.VerifyPerS, res.VerifyP99 = r.RequestsPerS, r.P99
	return res, nil
}
