package runtime

import (
	"errors"
	"sync"
	"testing"
)

func TestTaskCheckerListsOnlyForWhatTheCallerDoesNotKnow(t *testing.T) {
	lists := 0
	listed := sync.OnceValues(func() (map[string]bool, error) {
		lists++
		return map[string]bool{"stray-with-task": true}, nil
	})
	known := func(guid string) bool { return guid == "adopted-1" || guid == "adopted-2" }
	has := taskChecker(known, listed)
	for _, guid := range []string{"adopted-1", "adopted-2"} {
		if ok, err := has(guid); !ok || err != nil {
			t.Fatalf("has(%s) = %v, %v; want true", guid, ok, err)
		}
	}
	if lists != 0 {
		t.Fatalf("listed %d times for containers the caller knows", lists)
	}
	for guid, want := range map[string]bool{"stray-with-task": true, "gone": false, "gone-too": false} {
		if ok, err := has(guid); ok != want || err != nil {
			t.Fatalf("has(%s) = %v, %v; want %v", guid, ok, err, want)
		}
	}
	if lists != 1 {
		t.Fatalf("listed %d times, want once", lists)
	}
}

func TestTaskCheckerPassesTheListError(t *testing.T) {
	has := taskChecker(nil, sync.OnceValues(func() (map[string]bool, error) { return nil, errors.New("containerd down") }))
	if _, err := has("x"); err == nil {
		t.Fatal("no error")
	}
}
