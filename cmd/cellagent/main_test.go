package main

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"
)

func TestParseArgs(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		want    options
		wantErr string // in stderr; "" means no error
	}{
		{name: "nothing: the defaults", args: nil},
		{name: "a config", args: []string{"-config", "/etc/cellagent.json"}, want: options{configPath: "/etc/cellagent.json"}},
		{name: "check a config", args: []string{"-check-config", "-config", "a.json"}, want: options{configPath: "a.json", checkOnly: true}},
		{name: "check a config, flags the other way round", args: []string{"-config=a.json", "-check-config"}, want: options{configPath: "a.json", checkOnly: true}},
		{name: "version", args: []string{"-version"}, want: options{version: true}},
		{name: "the file given to -check-config", args: []string{"-check-config", "a.json"},
			wantErr: `cellagent: unexpected argument "a.json"; did you mean -config a.json?` + "\nusage: cellagent [-config FILE] [-check-config] [-version]"},
		{name: "a stray argument after a config", args: []string{"-config", "a.json", "extra"},
			wantErr: `cellagent: unexpected argument "extra"` + "\nusage:"},
		{name: "a flag after a stray argument is not parsed", args: []string{"a.json", "-check-config"},
			wantErr: `unexpected argument "a.json"; did you mean -config a.json?`},
		{name: "an unknown flag", args: []string{"-chek-config"}, wantErr: "flag provided but not defined: -chek-config"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			got, err := parseArgs(tc.args, &stderr)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("parseArgs(%q) = %v; stderr: %s", tc.args, err, stderr.String())
				}
				if got != tc.want {
					t.Errorf("parseArgs(%q) = %+v, want %+v", tc.args, got, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("parseArgs(%q) = %+v, want an error", tc.args, got)
			}
			if !strings.Contains(stderr.String(), tc.wantErr) {
				t.Errorf("stderr = %q, want it to contain %q", stderr.String(), tc.wantErr)
			}
		})
	}

	t.Run("-h prints the usage and is not an error to exit 2 for", func(t *testing.T) {
		var stderr bytes.Buffer
		_, err := parseArgs([]string{"-h"}, &stderr)
		if !errors.Is(err, flag.ErrHelp) || !strings.Contains(stderr.String(), "-check-config") {
			t.Errorf("err %v, stderr %q", err, stderr.String())
		}
	})
}
