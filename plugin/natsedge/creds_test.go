package natsedge

import (
	"strings"
	"testing"
)

// testJWT is shaped like a user JWT; the server, not the edge, verifies it.
const testJWT = "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.eyJzdWIiOiJVQkdRNVE1QTJBNzY3NzRUVkc2TTRLUkVXUURO.c2lnbmF0dXJl"

// testCreds is a .creds file as nsc writes it.
var testCreds = `-----BEGIN NATS USER JWT-----
` + testJWT + `
------END NATS USER JWT------

************************* IMPORTANT *************************
NKEY Seed printed below can be used to sign and prove identity.
NKEYs are sensitive and should be treated as secrets.

-----BEGIN USER NKEY SEED-----
` + testUserSeed + `
------END USER NKEY SEED------

*************************************************************
`

func TestParseCreds(t *testing.T) {
	for name, text := range map[string]string{
		"nsc":  testCreds,
		"crlf": strings.ReplaceAll(testCreds, "\n", "\r\n"),
	} {
		jwt, k, err := parseCreds([]byte(text))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if jwt != testJWT || k.public != testUserPublic {
			t.Fatalf("%s: jwt %q public %s", name, jwt, k.public)
		}
	}
}

func TestParseCredsRefusesBadFiles(t *testing.T) {
	tests := []struct {
		name, text string
	}{
		{"empty", ""},
		{"seed only", "-----BEGIN USER NKEY SEED-----\n" + testUserSeed + "\n------END USER NKEY SEED------\n"},
		{"jwt only", "-----BEGIN NATS USER JWT-----\n" + testJWT + "\n------END NATS USER JWT------\n"},
		{"not a jwt", strings.Replace(testCreds, testJWT, "notajwt", 1)},
		{"account seed", strings.Replace(testCreds, testUserSeed, testAccountSeed, 1)},
		{"bad seed", strings.Replace(testCreds, testUserSeed, testUserSeed[:40], 1)},
		{"unterminated block", "-----BEGIN NATS USER JWT-----\n" + testJWT + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := parseCreds([]byte(tt.text)); err == nil {
				t.Fatal("accepted")
			} else if strings.Contains(err.Error(), testUserSeed[5:30]) {
				t.Fatalf("error quotes the seed: %v", err)
			}
		})
	}
}

// FuzzParseCreds: the .creds parser never panics and returns either an
// error or a JWT and a usable user key.
func FuzzParseCreds(f *testing.F) {
	f.Add([]byte(testCreds))
	f.Add([]byte("---x---\na\n---y---\n---x---\nb\n---y---\n"))
	f.Add([]byte("------\n\n------"))
	f.Fuzz(func(t *testing.T, data []byte) {
		jwt, k, err := parseCreds(data)
		if err != nil {
			return
		}
		if strings.Count(jwt, ".") != 2 || k == nil || !strings.HasPrefix(k.public, "U") {
			t.Fatalf("accepted jwt %q key %v", jwt, k)
		}
	})
}
