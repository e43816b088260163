package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// TraefikHeap forces a garbage collection in Traefik (the pprof heap
// endpoint with gc=1) and returns its live heap from /debug/vars: the memory
// the process really holds, without the garbage an RSS reading includes.
func TraefikHeap(ctx context.Context, s *Stack) (int64, error) {
	if !s.Debug {
		return 0, fmt.Errorf("bench: traefik heap: Traefik runs without api.debug")
	}
	c := &http.Client{Timeout: 30 * time.Second}
	get := func(path string) ([]byte, error) {
		req, err := http.NewRequestWithContext(ctx, "GET", s.APIURL+path, nil)
		if err != nil {
			return nil, err
		}
		resp, err := c.Do(req)
		if err != nil {
			return nil, fmt.Errorf("bench: traefik GET %s: %w", path, err)
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("bench: traefik GET %s: %s", path, resp.Status)
		}
		return data, err
	}
	if _, err := get("/debug/pprof/heap?gc=1"); err != nil {
		return 0, err
	}
	data, err := get("/debug/vars")
	if err != nil {
		return 0, err
	}
	var vars struct {
		MemStats struct {
			HeapAlloc int64 `json:"HeapAlloc"`
		} `json:"memstats"`
	}
	if err := json.Unmarshal(data, &vars); err != nil || vars.MemStats.HeapAlloc == 0 {
		return 0, fmt.Errorf("bench: traefik /debug/vars has no memstats.HeapAlloc (%v)", err)
	}
	return vars.MemStats.HeapAlloc, nil
}

// ProfileUnderLoad drives a variant with wrk and takes a CPU profile of
// Traefik meanwhile, written to path. The profile shows what the request
// path costs inside Traefik, Yaegi's calls into compiled code included.
func ProfileUnderLoad(ctx context.Context, s *Stack, sess *Session, v Variant, l Load, path string) (WrkResult, error) {
	if !s.Debug {
		return WrkResult{}, fmt.Errorf("bench: profile: Traefik runs without api.debug")
	}
	// Long enough for a few thousand samples, whatever the round length.
	secs := 8
	type wrkOut struct {
		r   WrkResult
		err error
	}
	done := make(chan wrkOut, 1)
	go func() {
		r, _, err := RunWrk(ctx, variantLoad(s, sess, v, l, 10*time.Second))
		if err == nil {
			err = r.Clean()
		}
		done <- wrkOut{r, err}
	}()
	time.Sleep(time.Second)
	perr := func() error {
		req, err := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", s.APIURL, secs), nil)
		if err != nil {
			return err
		}
		resp, err := (&http.Client{Timeout: time.Duration(secs+30) * time.Second}).Do(req)
		if err != nil {
			return fmt.Errorf("bench: traefik CPU profile: %w", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("bench: traefik CPU profile: %s", resp.Status)
		}
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, resp.Body); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}()
	w := <-done
	if w.err != nil {
		return w.r, fmt.Errorf("bench: %s under profiling: %w", v.Name, w.err)
	}
	return w.r, perr
}
