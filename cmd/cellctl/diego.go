package main

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/cellagent/cellagent/executor"
)

// Tags a Diego cell puts on its containers (rep/lrp): an instance's
// container guid is its instance guid, a task's its task guid.
const (
	tagProcessGUID = "diego.process-guid"
	tagIndex       = "diego.index"
	tagTaskGUID    = "diego.task-guid"
)

// diegoIdentity names the Diego instance or task a container is, or "".
func diegoIdentity(guid string, tags map[string]string) string {
	if pg, ok := tags[tagProcessGUID]; ok {
		return fmt.Sprintf("diego lrp: process guid %s, index %s, instance guid %s", pg, tags[tagIndex], guid)
	}
	if tg, ok := tags[tagTaskGUID]; ok {
		return "diego task: task guid " + tg
	}
	return ""
}

// printDiegoState writes a Diego cell's part of cellctl state.
func printDiegoState(w io.Writer, d *executor.DiegoState) {
	if d == nil {
		return
	}
	bbs := "reachable"
	if !d.BBSReachable {
		bbs = "UNREACHABLE"
		if d.BBSError != "" {
			bbs += " (" + d.BBSError + ")"
		}
	}
	fmt.Fprintf(w, "diego\tpresence %s\tbbs %s\tevacuating %v\n", map[bool]string{true: "held", false: "NOT HELD"}[d.PresenceHeld], bbs, d.Evacuating)
	fmt.Fprintf(w, "diego lrps\t%s\t\n", counts(d.LRPs))
	fmt.Fprintf(w, "diego tasks\t%s\t\n", counts(d.Tasks))
}

func counts(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}
