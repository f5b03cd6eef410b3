package testagent

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// NATSCluster is a cluster of nats-servers inside the test process, on
// 127.0.0.1: random client ports, and cluster ports picked up front so that
// every server lists every other as a route (a full mesh that survives the
// loss of any one server, without relying on gossip from a seed).
type NATSCluster struct {
	Servers []*server.Server
}

// StartNATSCluster starts n servers and waits until each one is routed to
// all the others.
func StartNATSCluster(n int) (c *NATSCluster, retErr error) {
	clusterPorts := make([]int, n)
	for i := range clusterPorts {
		p, err := FreePort()
		if err != nil {
			return nil, err
		}
		clusterPorts[i] = p
	}
	c = &NATSCluster{}
	defer func() {
		if retErr != nil {
			c.Shutdown()
		}
	}()
	for i := range n {
		var routes []string
		for j, p := range clusterPorts {
			if j != i {
				routes = append(routes, "nats-route://127.0.0.1:"+strconv.Itoa(p))
			}
		}
		opts := &server.Options{
			ServerName: fmt.Sprintf("it-nats-%d", i),
			Host:       "127.0.0.1",
			Port:       server.RANDOM_PORT,
			NoLog:      true,
			NoSigs:     true,
			Cluster: server.ClusterOpts{
				Name: "it-cluster",
				Host: "127.0.0.1",
				Port: clusterPorts[i],
			},
			Routes: server.RoutesFromStr(strings.Join(routes, ",")),
		}
		s, err := server.NewServer(opts)
		if err != nil {
			return nil, fmt.Errorf("nats server %d: %w", i, err)
		}
		go s.Start()
		c.Servers = append(c.Servers, s)
		if !s.ReadyForConnections(10 * time.Second) {
			return nil, fmt.Errorf("nats server %d did not accept clients within 10s", i)
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		meshed := true
		for _, s := range c.Servers {
			if s.NumRemotes() != n-1 {
				meshed = false
			}
		}
		if meshed {
			return c, nil
		}
		if time.Now().After(deadline) {
			return nil, errors.New("nats cluster did not form a full mesh within 15s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// URLs are the client URLs of every server, in order.
func (c *NATSCluster) URLs() []string {
	urls := make([]string, len(c.Servers))
	for i, s := range c.Servers {
		urls[i] = s.ClientURL()
	}
	return urls
}

// ServerOf answers the index of the running server holding a client
// connection named name (nats.Name), or -1.
func (c *NATSCluster) ServerOf(name string) int {
	for i, s := range c.Servers {
		if !s.Running() {
			continue
		}
		connz, err := s.Connz(&server.ConnzOptions{Limit: 1024})
		if err != nil {
			continue
		}
		for _, conn := range connz.Conns {
			if conn.Name == name {
				return i
			}
		}
	}
	return -1
}

// Stop shuts server i down and waits until it is gone.
func (c *NATSCluster) Stop(i int) {
	c.Servers[i].Shutdown()
	c.Servers[i].WaitForShutdown()
}

// Shutdown stops every server.
func (c *NATSCluster) Shutdown() {
	for i := range c.Servers {
		c.Stop(i)
	}
}
