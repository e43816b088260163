// Package suggest is edgepass's one "did you mean" (plugin and daemon settings, /verify parameters), standard library only for Yaegi.
package suggest

import "strings"

// Distance is the Levenshtein distance of a and b, over bytes: the fewest
// single-byte insertions, deletions and substitutions turning a into b.
func Distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := 0; j <= len(b); j++ {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			// No min builtin: Yaegi v0.16.1 does not have it.
			v := prev[j] + 1
			if cur[j-1]+1 < v {
				v = cur[j-1] + 1
			}
			if prev[j-1]+cost < v {
				v = prev[j-1] + cost
			}
			cur[j] = v
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Closest is the name of valid nearest to name, ignoring case (the first of
// equally near ones), when it is within the given number of edits: the likely
// meaning of a typo. "" when none is near enough.
func Closest(name string, valid []string, within int) string {
	best, bestDist := "", within+1
	n := strings.ToLower(name)
	for _, v := range valid {
		if d := Distance(n, strings.ToLower(v)); d < bestDist {
			best = v
			bestDist = d
		}
	}
	return best
}
