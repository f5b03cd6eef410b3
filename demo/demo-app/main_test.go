package main

import (
	"strings"
	"testing"
)

func TestListenPort(t *testing.T) {
	for _, tc := range []struct {
		args           []string
		env, want, err string
	}{
		{args: nil, env: "", want: "8080"},
		{args: nil, env: "9000", want: "9000"},
		{args: []string{"7000"}, env: "9000", want: "7000"},
		{args: []string{"7000", "extra"}, err: `unexpected argument "extra"`},
		{args: []string{"-port=7000"}, err: `port "-port=7000" is not a TCP port`},
		{args: nil, env: "http", err: `port "http" is not a TCP port`},
		{args: []string{"70000"}, err: `port "70000" is not a TCP port`},
	} {
		got, err := listenPort(tc.args, tc.env)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("listenPort(%q, %q) = %q, %v; want error %q", tc.args, tc.env, got, err, tc.err)
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("listenPort(%q, %q) = %q, %v; want %q", tc.args, tc.env, got, err, tc.want)
		}
	}
}
