// Command critestweb is the web server inside the images that stand in
// for the nginx and httpd images of Kubernetes' CRI validation suite
// (critest) in the offline test: it serves a page on each given address,
// answers every path with 200, and puts in the page the name it plays
// and the client address it sees, so that a test can tell which server
// answered and through what.
//
//	critestweb -name NAME [-pidfile FILE] ADDR...
//
// It prints "NAME listening on ADDR" for each address on stdout (the
// container's log) and, with -pidfile, writes its PID there as nginx
// does.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "critestweb:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("critestweb", flag.ContinueOnError)
	name := fs.String("name", "critestweb", "the server this one stands in for, named in its page and log")
	pidfile := fs.String("pidfile", "", "write the PID to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return errors.New("usage: critestweb -name NAME [-pidfile FILE] ADDR...")
	}
	if *pidfile != "" {
		if err := os.WriteFile(*pidfile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			return err
		}
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, "<!DOCTYPE html>\n<html><head><title>Welcome to %[1]s!</title></head>\n"+
			"<body><h1>Welcome to %[1]s!</h1>\n<p>A test server standing in for %[1]s.</p>\n"+
			"<p>client %[2]s</p></body></html>\n", *name, r.RemoteAddr)
	})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	errs := make(chan error, fs.NArg())
	var servers []*http.Server
	for _, addr := range fs.Args() {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		servers = append(servers, srv)
		fmt.Printf("%s listening on %s\n", *name, l.Addr())
		go func() { errs <- srv.Serve(l) }()
	}
	select {
	case err := <-errs:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, s := range servers {
		_ = s.Shutdown(sctx)
	}
	return nil
}
