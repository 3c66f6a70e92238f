// Command demohook is the local webhook receiver of make demo
// (hack/demo.sh). The demo's notification settings
// (manifests/examples/notifications/demo.yaml) send the controller's
// notifications to it, and it appends each request it receives to --log,
// one line each: the time, the method, the path and the body, such as
//
//	12:25:04 POST /rollout-updated Rollout default/web is updating to registry.example/web:2.
//
// It listens on a loopback address only, answers every request with 204
// No Content, and serves until SIGINT or SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

const usage = `Usage: demohook --log FILE [--address 127.0.0.1:PORT]

Receives webhook requests on a loopback address and appends one line per
request (time, method, path, body) to --log, until SIGINT or SIGTERM.

Flags:
`

func main() {
	address := flag.String("address", "127.0.0.1:18096", "The loopback `HOST:PORT` to listen on.")
	logFile := flag.String("log", "", "The `FILE` the requests are appended to.")
	flag.Usage = func() {
		_, _ = fmt.Fprint(flag.CommandLine.Output(), usage)
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 || *logFile == "" {
		flag.Usage()
		os.Exit(2)
	}
	log.SetFlags(log.Ltime)
	log.SetOutput(os.Stdout)
	if err := run(*address, *logFile); err != nil {
		log.Print("demohook: ", err)
		os.Exit(1)
	}
}

// run serves until SIGINT or SIGTERM.
func run(address, logFile string) error {
	if err := checkLoopback(address); err != nil {
		return err
	}
	out, err := os.OpenFile(logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer func() { _ = out.Close() }()
	// Listening first: a port in use fails here, not in the background.
	l, err := net.Listen("tcp", address)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv := &http.Server{Handler: newReceiver(out, time.Now), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	log.Printf("Listening on http://%s; requests logged to %s", l.Addr(), logFile)
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	log.Print("Stopping")
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}
