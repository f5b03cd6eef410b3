package main

import (
	"strings"
	"testing"
)

func TestNoArgs(t *testing.T) {
	if err := noArgs(nil); err != nil {
		t.Errorf("noArgs(nil) = %v", err)
	}
	err := noArgs([]string{"10s", "-rounds", "5"})
	if err == nil || !strings.Contains(err.Error(), `unexpected argument "10s"`) || !strings.Contains(err.Error(), "usage: proxybench [flags]") {
		t.Errorf("noArgs(stray) = %v, want the argument and the usage", err)
	}
}
