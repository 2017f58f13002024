package service_test

import (
	"fmt"
	"io"
	"log"
	"net/http"

	"switchboard"
	"switchboard/service"
)

// ExampleLookup serves the hello service the way `switchboard serve
// --service hello` does: look it up, let it pick its framing, serve a fresh
// handler. Then an ordinary HTTP client asks it for a page.
func ExampleLookup() {
	svc, err := service.Lookup("hello")
	if err != nil {
		log.Fatal(err)
	}
	if _, err := svc.ResolveFraming("line"); err != nil {
		fmt.Println(err)
	}
	spec, err := svc.ResolveFraming("") // no --framing given: the service's own
	if err != nil {
		log.Fatal(err)
	}
	srv, err := switchboard.NewServer(svc.New(), switchboard.WithFraming(spec, 0))
	if err != nil {
		log.Fatal(err)
	}
	lns, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lns...) }()
	defer func() { srv.Close(); <-done }()

	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := hc.Get("http://" + lns[0].Addr().String() + "/")
	if err != nil {
		log.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(resp.Status, resp.Header.Get("Content-Type"), string(body))
	// Output:
	// service: incompatible framing: service hello speaks raw framing, not line
	// 200 OK text/plain Hello, world!
}
