package proxyhook

import (
	"reflect"
	"testing"

	"github.com/cellagent/cellagent/containerstore"
	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/proxyconfig"
)

// A port gets ALPN h2 when one of its routes has protocol http2, as Diego's
// Envoy offers it with http2 enabled.
func TestMappingsOfMarksHTTP2Ports(t *testing.T) {
	inst := &containerstore.Instance{
		Request: executor.RunRequest{
			Ports: []uint16{8080, 9090},
			Routes: []executor.Route{
				{Hostnames: []string{"a.example.com"}, Port: 8080, Protocol: "http2"},
				{Hostnames: []string{"b.example.com"}, Port: 9090, Protocol: "http1"},
				{Hostnames: []string{"c.example.com"}, Port: 9090},
			},
		},
		ProxyPorts: map[uint16]uint16{8080: 61001, 9090: 61002},
	}
	got := mappingsOf(inst)
	want := []proxyconfig.Mapping{{AppPort: 8080, ProxyPort: 61001, HTTP2: true}, {AppPort: 9090, ProxyPort: 61002}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("mappingsOf = %+v, want %+v", got, want)
	}
}
