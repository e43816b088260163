package natsedge

import (
	"errors"
	"strings"
)

// Errors returned for a .creds file that cannot be used. They never quote
// the file's content.
var (
	ErrCredsFormat = errors.New("not a NATS .creds file: want a \"-----BEGIN NATS USER JWT-----\" block followed by a \"-----BEGIN USER NKEY SEED-----\" block, as nsc writes it")
	ErrCredsJWT    = errors.New("the first block of the .creds file is not a JWT")
)

// maxJWT bounds the user JWT of a .creds file.
const maxJWT = 16 << 10

// parseCreds reads a NATS .creds file the way nats.go's UserCredentials does:
// the first "-----…-----" delimited block is the user JWT, the second the
// NKey user seed that signs the server's nonce.
func parseCreds(data []byte) (string, *nkeyUser, error) {
	lines := strings.Split(string(data), "\n")
	var blocks []string
	for i := 0; i+2 < len(lines) && len(blocks) < 2; i++ {
		if !credsMarker(lines[i]) {
			continue
		}
		body := strings.TrimSpace(lines[i+1])
		if !credsToken(body) || !credsMarker(lines[i+2]) {
			continue
		}
		blocks = append(blocks, body)
		i += 2
	}
	if len(blocks) < 2 {
		return "", nil, ErrCredsFormat
	}
	jwt := blocks[0]
	if !looksLikeJWT(jwt) {
		return "", nil, ErrCredsJWT
	}
	k, err := parseNKeySeed(blocks[1])
	if err != nil {
		return "", nil, err
	}
	return jwt, k, nil
}

// credsMarker reports whether line is a "---…---" block delimiter.
func credsMarker(line string) bool {
	line = strings.TrimSpace(line)
	return len(line) >= 6 && strings.HasPrefix(line, "---") && strings.HasSuffix(line, "---")
}

// credsToken reports whether s is a block body: [A-Za-z0-9_.=-]+.
func credsToken(s string) bool {
	if s == "" || len(s) > maxJWT {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' || c == '='
		if !ok {
			return false
		}
	}
	return true
}

// looksLikeJWT checks the compact form: three non-empty base64url parts.
// The server verifies the JWT itself.
func looksLikeJWT(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return false
	}
	for i := 0; i < 3; i++ {
		if parts[i] == "" {
			return false
		}
	}
	return true
}
