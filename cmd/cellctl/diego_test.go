package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/fakes"
)

// TestStateShowsTheDiegoView: cellctl state shows presence, BBS and the
// Diego instances and tasks by state on a Diego cell, and nothing of it
// elsewhere.
func TestStateShowsTheDiegoView(t *testing.T) {
	client := &fakes.FakeClient{}
	client.StateReturns(executor.CellState{CellID: "c1", Diego: &executor.DiegoState{PresenceHeld: true, BBSReachable: false,
		BBSError: "bbs /v1/actual_lrps/list: connection refused", LRPs: map[string]int{"RUNNING": 2, "CLAIMED": 1},
		Tasks: map[string]int{"Running": 1}}}, nil)
	var out bytes.Buffer
	if err := (&cli{client: client, out: &out}).state(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"presence held", "bbs UNREACHABLE (bbs /v1/actual_lrps/list: connection refused)",
		"CLAIMED=1 RUNNING=2", "Running=1"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("state output lacks %q:\n%s", want, out.String())
		}
	}
	client.StateReturns(executor.CellState{CellID: "c1"}, nil)
	out.Reset()
	if err := (&cli{client: client, out: &out}).state(context.Background()); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "diego") {
		t.Errorf("a cell without a diego section shows a Diego view:\n%s", out.String())
	}
}

// TestEventsNameTheDiegoInstance: an event about a Diego container names
// its process guid, index and instance guid.
func TestEventsNameTheDiegoInstance(t *testing.T) {
	var out bytes.Buffer
	c := &cli{out: &out}
	c.printEvent(executor.Event{Seq: 7, Time: time.Now(), Type: executor.EventContainerState, GUID: "ig-1",
		Container: &executor.Container{State: executor.StateRunning, Tags: map[string]string{tagProcessGUID: "pg-1", tagIndex: "0"}}})
	if want := "[diego lrp: process guid pg-1, index 0, instance guid ig-1]"; !strings.Contains(out.String(), want) {
		t.Errorf("event line %q lacks %q", out.String(), want)
	}
}
