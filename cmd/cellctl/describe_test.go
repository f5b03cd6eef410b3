package main

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/cellagent/cellagent/executor"
)

// TestDescribeKnowsARefusedConnectionByItsError: the hint comes from the
// error's type (ECONNREFUSED), not from its wording.
func TestDescribeKnowsARefusedConnectionByItsError(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	api := "http://" + l.Addr().String()
	l.Close() // nothing listens there now: the dial is refused
	err = executor.NewHTTPClient(api, nil).Ping(context.Background())
	if err == nil {
		t.Fatal("Ping of a closed port answered no error")
	}
	if got := describe(err, api); !strings.Contains(got, "is cellagent running and listening on "+api) {
		t.Errorf("describe(%v) = %q, want the hint", err, got)
	}
	if got := describe(executor.ErrContainerNotFound, api); got != "container not found (ContainerNotFound)" {
		t.Errorf("describe(not found) = %q", got)
	}
}
