package harness

import (
	"fmt"
	"time"
)

// WaitEvery calls cond every interval until it reports done, and returns
// how long that took; once timeout has passed without it, the error gives
// cond's last word on why not (when it says). cond runs at least once.
func WaitEvery(interval, timeout time.Duration, cond func() (done bool, why string)) (time.Duration, error) {
	start := time.Now()
	for {
		done, why := cond()
		if done {
			return time.Since(start), nil
		}
		if time.Since(start) > timeout {
			if why == "" {
				return time.Since(start), fmt.Errorf("not within %s", timeout)
			}
			return time.Since(start), fmt.Errorf("not within %s (last: %s)", timeout, why)
		}
		time.Sleep(interval)
	}
}
