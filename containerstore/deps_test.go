package containerstore_test

import (
	"reflect"
	"testing"

	"github.com/cellagent/cellagent/containerstore"
	"github.com/cellagent/cellagent/internal/depcheck"
)

// TestImportRules: the store is above its adapters: it knows them only by its own interfaces.
func TestImportRules(t *testing.T) {
	depcheck.Check(t, depcheck.Rule{Package: "containerstore", Project: []string{"executor", "logfile", "internal/backoff", "internal/atomicfile", "internal/cellinit", "internal/listenprobe", "internal/tickgrid"}})
}

// TestNoCallsBackUp: the parts beside the store tell it what happened by
// notices to its Inbox (notices.go); the store offers them nothing to call
// back (it once had these methods for the proxy and the credentials).
func TestNoCallsBackUp(t *testing.T) {
	st := reflect.TypeOf(&containerstore.Store{})
	for _, name := range []string{"Fail", "Publish", "Unroute", "Reroute", "UpdateCredentials"} {
		if _, ok := st.MethodByName(name); ok {
			t.Errorf("Store.%s exists: send a containerstore.Notice to the store's Inbox instead", name)
		}
	}
}
