package main

import (
	"bytes"
	"net"
	"strings"
	"testing"
)

// TestStrayArguments: a command that takes no arguments refuses one with a
// usage error (exit 2) before it talks to the agent, instead of ignoring it.
func TestStrayArguments(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	api := "http://" + l.Addr().String() // nothing answers there
	l.Close()

	for _, tc := range []struct {
		args  []string
		usage string
	}{
		{[]string{"state", "g1"}, "cellctl state"},
		{[]string{"list", "g1"}, "cellctl list"},
		{[]string{"ls", "g1"}, "cellctl ls"},
		{[]string{"events", "--since", "3", "g1"}, "cellctl events [--follow] [--since N]"},
		{[]string{"watch", "g1"}, "cellctl watch [--interval 2s]"},
		{[]string{"evacuate", "now"}, "cellctl evacuate [--wait]"},
		{[]string{"routes", "--nats", "nats://127.0.0.1:1", "app.example.com"}, "cellctl routes [--watch] [--nats URL] [--listen 21s]"},
		{[]string{"get", "g1", "g2"}, "cellctl get GUID"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := realMain(append([]string{"--api", api}, tc.args...), &stdout, &stderr)
			if code != 2 {
				t.Errorf("exit %d, want 2 (usage); stderr: %s", code, stderr.String())
			}
			if !strings.Contains(stderr.String(), "usage: "+tc.usage) {
				t.Errorf("stderr = %q, want the usage %q", stderr.String(), tc.usage)
			}
			if strings.Contains(stderr.String(), "connection refused") {
				t.Errorf("it talked to the agent before refusing: %s", stderr.String())
			}
		})
	}

	t.Run("without stray arguments it does talk to the agent", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		if code := realMain([]string{"--api", api, "state"}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "connection refused") {
			t.Errorf("exit %d, stderr %q; want 1 and connection refused", code, stderr.String())
		}
	})
}
