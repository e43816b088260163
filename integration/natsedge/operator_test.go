package natsedge_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/edgepass/edgepass/plugin/natsedge"
	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// operatorSetup is a server in operator mode (decentralized JWT auth) with
// one account that has JetStream, and .creds files for its users.
type operatorSetup struct {
	ns      *natsServer
	account nkeys.KeyPair
	dir     string
}

func startOperatorServer(t *testing.T) *operatorSetup {
	t.Helper()
	op, _ := nkeys.CreateOperator()
	opPub, _ := op.PublicKey()
	oc := jwt.NewOperatorClaims(opPub)
	oc.Name = "edgepass-test"
	opJWT, err := oc.Encode(op)
	if err != nil {
		t.Fatal(err)
	}
	opClaims, err := jwt.DecodeOperatorClaims(opJWT)
	if err != nil {
		t.Fatal(err)
	}
	encodeAccount := func(kp nkeys.KeyPair, name string, js bool) (string, string) {
		pub, _ := kp.PublicKey()
		ac := jwt.NewAccountClaims(pub)
		ac.Name = name
		if js {
			ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
		}
		s, err := ac.Encode(op)
		if err != nil {
			t.Fatal(err)
		}
		return pub, s
	}
	sys, _ := nkeys.CreateAccount()
	acc, _ := nkeys.CreateAccount()
	sysPub, sysJWT := encodeAccount(sys, "SYS", false)
	accPub, accJWT := encodeAccount(acc, "EDGEPASS", true)
	resolver := &server.MemAccResolver{}
	if err := resolver.Store(sysPub, sysJWT); err != nil {
		t.Fatal(err)
	}
	if err := resolver.Store(accPub, accJWT); err != nil {
		t.Fatal(err)
	}
	ns := startServer(t, func(o *server.Options) {
		o.TrustedOperators = []*jwt.OperatorClaims{opClaims}
		o.SystemAccount = sysPub
		o.AccountResolver = resolver
	})
	return &operatorSetup{ns: ns, account: acc, dir: t.TempDir()}
}

// creds issues a user of the account, with perms (nil: everything), and
// writes its .creds file.
func (o *operatorSetup) creds(t *testing.T, name string, pub, sub []string) string {
	t.Helper()
	u, _ := nkeys.CreateUser()
	uPub, _ := u.PublicKey()
	seed, _ := u.Seed()
	uc := jwt.NewUserClaims(uPub)
	uc.Name = name
	if pub != nil {
		uc.Permissions.Pub.Allow = pub
		uc.Permissions.Sub.Allow = sub
	}
	userJWT, err := uc.Encode(o.account)
	if err != nil {
		t.Fatal(err)
	}
	text, err := jwt.FormatUserConfig(userJWT, seed)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(o.dir, name+".creds")
	if err := os.WriteFile(path, text, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestCredsFileAuthInOperatorMode: an edge authenticates with an nsc-style
// .creds file (user JWT signed by its account, nonce signed by its seed) and
// works with exactly EdgePermissions in the JWT.
func TestCredsFileAuthInOperatorMode(t *testing.T) {
	o := startOperatorServer(t)
	daemonCreds := o.creds(t, "daemon", nil, nil)
	pub, sub := natsedge.EdgePermissions(bucket, "ops-edge")
	edgeCreds := o.creds(t, "ops-edge", pub, sub)
	wr := newWriter(t, o.ns.url(), nats.UserCredentials(daemonCreds))
	logs := followsWithItsPermissions(t, wr, natsedge.Config{URLs: []string{o.ns.url()}, CredsFile: edgeCreds, EdgeName: "ops-edge"}, "j", "JWT auth")
	// A .creds file of a user the account never signed is refused.
	other, _ := nkeys.CreateAccount()
	stranger := &operatorSetup{account: other, dir: o.dir}
	strangerCreds := stranger.creds(t, "stranger", pub, sub)
	if !connectRefused(t, natsedge.Config{URLs: []string{o.ns.url()}, CredsFile: strangerCreds, EdgeName: "ops-edge", ReplicaID: "stranger"}, logs) {
		t.Fatal("connected with a JWT of an unknown account")
	}
}
