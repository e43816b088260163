// Package base64url checks ids the daemon generates as unpadded base64url
// (session ids, key ids) before they reach NATS keys or URLs, where dots
// and wildcards would change a key's meaning.
package base64url

// Valid reports whether s is minLen to maxLen characters of the base64url
// alphabet (A-Z, a-z, 0-9, '-', '_'; no padding).
func Valid(s string, minLen, maxLen int) bool {
	if len(s) < minLen || len(s) > maxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
