package diego_test

import (
	"encoding/json"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// routerMessage is the part of a router.register / router.unregister
// message the Diego specs read.
type routerMessage struct {
	URIs              []string          `json:"uris"`
	PrivateInstanceID string            `json:"private_instance_id"`
	Tags              map[string]string `json:"tags"`
}

type routerEvent struct {
	subject string
	msg     routerMessage
	at      time.Time // when the test received it
}

// routeRecorder keeps the router.* messages of one NATS subscription in
// the order NATS delivered them.
type routeRecorder struct {
	mu   sync.Mutex
	msgs []routerEvent
}

// recordRoutes subscribes to router.register and router.unregister on url
// until the spec ends.
func recordRoutes(url string) *routeRecorder {
	nc, err := nats.Connect(url)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(nc.Close)
	rec := &routeRecorder{}
	for _, subj := range []string{"router.register", "router.unregister"} {
		_, err := nc.Subscribe(subj, func(m *nats.Msg) {
			var rm routerMessage
			if err := json.Unmarshal(m.Data, &rm); err != nil {
				return
			}
			rec.mu.Lock()
			rec.msgs = append(rec.msgs, routerEvent{m.Subject, rm, time.Now()})
			rec.mu.Unlock()
		})
		Expect(err).NotTo(HaveOccurred())
	}
	Expect(nc.Flush()).To(Succeed())
	return rec
}

// all answers the messages seen so far, in order.
func (r *routeRecorder) all() []routerEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]routerEvent(nil), r.msgs...)
}

// first answers the position of the first message on subject for
// instance guid naming uri, or -1.
func (r *routeRecorder) first(subject, guid, uri string) int {
	for i, e := range r.all() {
		if e.subject != subject || e.msg.PrivateInstanceID != guid {
			continue
		}
		for _, u := range e.msg.URIs {
			if u == uri {
				return i
			}
		}
	}
	return -1
}

// registered answers whether the last register of guid naming uri came
// after its last unregister of uri, with the tag if tag != "".
func (r *routeRecorder) registered(guid, uri, tagKey, tagValue string) bool {
	state := false
	for _, e := range r.all() {
		if e.msg.PrivateInstanceID != guid {
			continue
		}
		names := false
		for _, u := range e.msg.URIs {
			names = names || u == uri
		}
		if !names {
			continue
		}
		state = e.subject == "router.register" && (tagKey == "" || e.msg.Tags[tagKey] == tagValue)
	}
	return state
}

// registeredAt answers when the first router.register naming uri (any
// instance) arrived, or the zero time.
func (r *routeRecorder) registeredAt(uri string) time.Time {
	for _, e := range r.all() {
		if e.subject == "router.register" && slices.Contains(e.msg.URIs, uri) {
			return e.at
		}
	}
	return time.Time{}
}
