// Command demo-app is the small static HTTP app cellagent's demo and
// integration tests run in containers. It listens on $PORT (default 8080),
// answers "/" with its instance guid (503 after "/sick" until "/well"), "/env" with its environment, "/cert"
// with the serial of the identity certificate in $CF_INSTANCE_CERT, and
// "/exit?code=N" by exiting. On SIGTERM it appends the time to
// $SIGNAL_FILE (when set), waits $STOP_DELAY, and exits 0.
package main

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	port, err := listenPort(os.Args[1:], os.Getenv("PORT"))
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo-app: %v\nusage: demo-app [PORT] (default $PORT, else 8080)\n", err)
		os.Exit(2)
	}
	var sick atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc("/sick", func(w http.ResponseWriter, r *http.Request) { sick.Store(true) })
	mux.HandleFunc("/well", func(w http.ResponseWriter, r *http.Request) { sick.Store(false) })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if sick.Load() {
			http.Error(w, "sick", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "hello from %s (index %s)\n", os.Getenv("CF_INSTANCE_GUID"), os.Getenv("CF_INSTANCE_INDEX"))
	})
	mux.HandleFunc("/env", func(w http.ResponseWriter, r *http.Request) {
		env := os.Environ()
		sort.Strings(env)
		fmt.Fprintln(w, strings.Join(env, "\n"))
	})
	mux.HandleFunc("/cert", func(w http.ResponseWriter, r *http.Request) {
		b, err := os.ReadFile(os.Getenv("CF_INSTANCE_CERT"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		block, _ := pem.Decode(b)
		if block == nil {
			http.Error(w, "no PEM in certificate file", http.StatusInternalServerError)
			return
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "%x\n", cert.SerialNumber)
	})
	mux.HandleFunc("/read", func(w http.ResponseWriter, r *http.Request) {
		b, err := os.ReadFile(r.URL.Query().Get("path"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		w.Write(b)
	})
	mux.HandleFunc("/exit", func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(r.URL.Query().Get("code"))
		fmt.Fprintf(w, "exiting with %d\n", code)
		go func() { time.Sleep(50 * time.Millisecond); os.Exit(code) }()
	})
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	go func() {
		<-sigs
		got := time.Now().UnixNano()
		if f := os.Getenv("SIGNAL_FILE"); f != "" {
			if fh, err := os.OpenFile(f, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
				fmt.Fprintf(fh, "%d\n", got)
				fh.Close()
			}
		}
		fmt.Printf("got SIGTERM at %d, exiting\n", got)
		if d, err := time.ParseDuration(os.Getenv("STOP_DELAY")); err == nil {
			time.Sleep(d)
		}
		os.Exit(0)
	}()
	// BIND_INTERNAL_IP=1 listens on $CF_INSTANCE_INTERNAL_IP only (not on
	// loopback), as apps do that bind to the address Diego gives them.
	host := ""
	if os.Getenv("BIND_INTERNAL_IP") == "1" {
		host = os.Getenv("CF_INSTANCE_INTERNAL_IP")
	}
	fmt.Printf("demo-app listening on %s:%s\n", host, port)
	if err := http.ListenAndServe(host+":"+port, mux); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// listenPort is the port to listen on: the one argument, else $PORT, else
// 8080. More arguments or a port that is not one are refused rather than
// ignored or found out at listen time.
func listenPort(args []string, env string) (string, error) {
	port := env
	switch {
	case len(args) > 1:
		return "", fmt.Errorf("unexpected argument %q", args[1])
	case len(args) == 1:
		port = args[0]
	case port == "":
		port = "8080"
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("port %q is not a TCP port (1-65535)", port)
	}
	return port, nil
}
