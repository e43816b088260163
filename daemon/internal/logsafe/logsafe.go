// Package logsafe shortens attacker-controlled values before they reach a
// log.
package logsafe

// Truncate cuts s to n bytes, marking the cut with "…".
func Truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
