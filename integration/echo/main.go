// Command echo is the backend of edgepass's end-to-end tests and demo: it
// answers every request with what it received (method, path, headers) as JSON,
// so a test can assert which identity headers reached the application. With
// -html it answers browser navigations with a small page showing the identity
// headers instead (the demo app).
package main

import (
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/edgepass/edgepass/integration/echo/echoserver"
	"github.com/edgepass/edgepass/plugin/assertion"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	html := flag.Bool("html", false, "answer browser navigations with an HTML page (demo app)")
	jwks := flag.String("assertion-jwks", "", "verify edgepass identity assertions with this JWKS (the daemon's <publicURL>/.well-known/jwks.json)")
	issuer := flag.String("assertion-issuer", "", "the assertions' iss (the daemon's publicURL)")
	audience := flag.String("assertion-audience", "", "this backend's audience (the middleware's assertionAudience)")
	flag.Parse()

	opts := echoserver.Options{HTML: *html}
	if *jwks != "" {
		v, err := assertion.NewVerifier(assertion.VerifierOptions{JWKSURL: *jwks, Issuer: *issuer, Audience: *audience})
		if err != nil {
			log.Fatalf("echo: %v", err)
		}
		opts.Verifier = v
	}

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("echo: cannot listen on %s: %v; pick a free port with -listen", *listen, err)
	}
	srv := &http.Server{
		Handler:           echoserver.Handler(opts),
		ReadHeaderTimeout: 10 * time.Second,
	}
	fmt.Fprintf(os.Stdout, "ready http://%s\n", ln.Addr())
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatalf("echo: %v", err)
	}
}
