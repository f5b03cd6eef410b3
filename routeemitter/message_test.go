package routeemitter_test

import (
	"bytes"
	"encoding/json"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/routeemitter"
	"github.com/cellagent/cellagent/routeemitter/routetable"
)

// gorouterMessage mirrors the JSON types of Gorouter's RegistryMessage
// (mbus/subscriber.go): decoding into it fails exactly where Gorouter would
// drop the message.
type gorouterMessage struct {
	Host                    string            `json:"host"`
	Port                    uint16            `json:"port"`
	HTTPVersion             uint16            `json:"http_version"`
	TLSPort                 uint16            `json:"tls_port"`
	Uris                    []string          `json:"uris"`
	Tags                    map[string]string `json:"tags"`
	App                     string            `json:"app"`
	StaleThresholdInSeconds int               `json:"stale_threshold_in_seconds"`
	RouteServiceURL         string            `json:"route_service_url"`
	PrivateInstanceID       string            `json:"private_instance_id"`
	ServerCertDomainSAN     string            `json:"server_cert_domain_san"`
	PrivateInstanceIndex    string            `json:"private_instance_index"`
	IsolationSegment        string            `json:"isolation_segment"`
	EndpointUpdatedAtNs     int64             `json:"endpoint_updated_at_ns"`
	AvailabilityZone        string            `json:"availability_zone"`
	Protocol                string            `json:"protocol"`
	Options                 struct {
		LoadBalancingAlgorithm string `json:"loadbalancing"`
	} `json:"options"`
}

var _ = Describe("BuildMessages", func() {
	now := time.Unix(1700000000, 123)

	multi := routeemitter.Endpoint{
		GUID: "g1", LogGUID: "a1", Index: 3,
		ExternalIP: "10.0.0.5", InternalIP: "10.255.0.7",
		Mappings: []routeemitter.Mapping{
			{ContainerPort: 8080, HostPort: 40001, ContainerTLSPort: 61001, HostTLSPort: 40002},
			{ContainerPort: 9090, HostPort: 40003},
		},
		Routes: []routeemitter.Route{
			{Hostnames: []string{"app.example.com", "app.example.com/api"}, Port: 8080},
			{Hostnames: []string{"admin.example.com"}, Port: 9090},
			{Hostnames: []string{"orphan.example.com"}, Port: 7070},
		},
	}

	DescribeTable("builds Gorouter messages",
		func(ep routeemitter.Endpoint, instanceAddress bool, expected []gorouterMessage) {
			msgs := routeemitter.BuildMessages(ep, "z1", instanceAddress, now)
			Expect(msgs).To(HaveLen(len(expected)))
			for i, m := range msgs {
				raw, err := json.Marshal(m)
				Expect(err).NotTo(HaveOccurred())
				var decoded gorouterMessage
				dec := json.NewDecoder(bytes.NewReader(raw))
				Expect(dec.Decode(&decoded)).To(Succeed(), string(raw))
				Expect(decoded).To(Equal(expected[i]))
			}
		},
		Entry("host ports with the proxy's tls_port", multi, false, []gorouterMessage{
			{Host: "10.0.0.5", Port: 40001, TLSPort: 40002, Uris: []string{"app.example.com", "app.example.com/api"},
				App: "a1", PrivateInstanceID: "g1", PrivateInstanceIndex: "3", ServerCertDomainSAN: "g1",
				AvailabilityZone: "z1", Tags: map[string]string{"component": "cellagent"}, EndpointUpdatedAtNs: now.UnixNano()},
			{Host: "10.0.0.5", Port: 40003, Uris: []string{"admin.example.com"},
				App: "a1", PrivateInstanceID: "g1", PrivateInstanceIndex: "3", ServerCertDomainSAN: "g1",
				AvailabilityZone: "z1", Tags: map[string]string{"component": "cellagent"}, EndpointUpdatedAtNs: now.UnixNano()},
		}),
		Entry("instance address: container IP and container ports", multi, true, []gorouterMessage{
			{Host: "10.255.0.7", Port: 8080, TLSPort: 61001, Uris: []string{"app.example.com", "app.example.com/api"},
				App: "a1", PrivateInstanceID: "g1", PrivateInstanceIndex: "3", ServerCertDomainSAN: "g1",
				AvailabilityZone: "z1", Tags: map[string]string{"component": "cellagent"}, EndpointUpdatedAtNs: now.UnixNano()},
			{Host: "10.255.0.7", Port: 9090, Uris: []string{"admin.example.com"},
				App: "a1", PrivateInstanceID: "g1", PrivateInstanceIndex: "3", ServerCertDomainSAN: "g1",
				AvailabilityZone: "z1", Tags: map[string]string{"component": "cellagent"}, EndpointUpdatedAtNs: now.UnixNano()},
		}),
		Entry("Diego's per-route fields and the metric tags", routeemitter.Endpoint{
			GUID: "g1", LogGUID: "a1", Index: 3, ExternalIP: "10.0.0.5",
			Mappings: []routeemitter.Mapping{{ContainerPort: 8080, HostPort: 40001, HostTLSPort: 40002}},
			Routes: []routeemitter.Route{{Hostnames: []string{"app.example.com"}, Port: 8080,
				RouteServiceURL: "https://rs.example.com/x", IsolationSegment: "iso-1", Protocol: "http2",
				Options: &routetable.RouteOptions{LoadBalancing: "least-connection"}}},
			Tags: map[string]string{"app_name": "web", "instance_id": "g1"},
		}, false, []gorouterMessage{
			{Host: "10.0.0.5", Port: 40001, TLSPort: 40002, Uris: []string{"app.example.com"},
				App: "a1", PrivateInstanceID: "g1", PrivateInstanceIndex: "3", ServerCertDomainSAN: "g1",
				AvailabilityZone: "z1", EndpointUpdatedAtNs: now.UnixNano(),
				Tags:            map[string]string{"component": "cellagent", "app_name": "web", "instance_id": "g1"},
				RouteServiceURL: "https://rs.example.com/x", IsolationSegment: "iso-1", Protocol: "http2",
				Options: struct {
					LoadBalancingAlgorithm string `json:"loadbalancing"`
				}{"least-connection"}},
		}),
		Entry("no routes: no messages", routeemitter.Endpoint{GUID: "g1", ExternalIP: "10.0.0.5",
			Mappings: []routeemitter.Mapping{{ContainerPort: 8080, HostPort: 40001}}}, false, []gorouterMessage{}),
		Entry("no host port mapped: no message", routeemitter.Endpoint{GUID: "g1", ExternalIP: "10.0.0.5",
			Mappings: []routeemitter.Mapping{{ContainerPort: 8080}},
			Routes:   []routeemitter.Route{{Hostnames: []string{"a.example.com"}, Port: 8080}}}, false, []gorouterMessage{}),
	)

	It("writes private_instance_index as a JSON string and leaves tls_port out without a proxy", func() {
		msgs := routeemitter.BuildMessages(multi, "z1", false, now)
		withProxy, err := json.Marshal(msgs[0])
		Expect(err).NotTo(HaveOccurred())
		Expect(string(withProxy)).To(ContainSubstring(`"private_instance_index":"3"`))
		Expect(string(withProxy)).To(ContainSubstring(`"tls_port":40002`))

		noProxy, err := json.Marshal(msgs[1])
		Expect(err).NotTo(HaveOccurred())
		Expect(string(noProxy)).NotTo(ContainSubstring("tls_port"))

		var fields map[string]any
		Expect(json.Unmarshal(withProxy, &fields)).To(Succeed())
		Expect(fields).To(HaveLen(11))
		for _, key := range []string{"host", "port", "tls_port", "uris", "app", "private_instance_id",
			"private_instance_index", "server_cert_domain_san", "availability_zone", "tags", "endpoint_updated_at_ns"} {
			Expect(fields).To(HaveKey(key))
		}
	})

	It("would be dropped by Gorouter if the index were a number (the mirror type catches it)", func() {
		var decoded gorouterMessage
		Expect(json.Unmarshal([]byte(`{"private_instance_index":0}`), &decoded)).NotTo(Succeed())
	})

	It("keys endpoints like Gorouter", func() {
		msgs := routeemitter.BuildMessages(multi, "z1", false, now)
		Expect(msgs[0].Address()).To(Equal("10.0.0.5:40002"))
		Expect(msgs[0].TLS()).To(BeTrue())
		Expect(msgs[1].Address()).To(Equal("10.0.0.5:40003"))
		Expect(msgs[1].TLS()).To(BeFalse())
	})
})
