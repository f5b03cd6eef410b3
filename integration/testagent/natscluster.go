package testagent

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// NATSCluster is a cluster of nats-servers inside the test process, on
// 127.0.0.1 with random client and cluster ports. Each server routes
// explicitly to every server started before it, so every pair has its own
// route and the cluster stays meshed when any one server goes away.
type NATSCluster struct {
	Servers []*server.Server
}

// StartNATSCluster starts n servers and waits until each one is routed to
// all the others.
func StartNATSCluster(n int) (*NATSCluster, error) {
	c := &NATSCluster{}
	if err := c.start(n); err != nil {
		c.Shutdown()
		return nil, err
	}
	return c, nil
}

func (c *NATSCluster) start(n int) error {
	for i := range n {
		var routes []*url.URL
		for _, prev := range c.Servers {
			routes = append(routes, &url.URL{Scheme: "nats-route", Host: prev.ClusterAddr().String()})
		}
		s, err := server.NewServer(&server.Options{
			ServerName: fmt.Sprintf("it-nats-%d", i),
			Host:       "127.0.0.1",
			Port:       server.RANDOM_PORT,
			NoLog:      true,
			NoSigs:     true,
			Cluster:    server.ClusterOpts{Name: "it-cluster", Host: "127.0.0.1", Port: server.RANDOM_PORT},
			Routes:     routes,
		})
		if err != nil {
			return fmt.Errorf("nats server %d: %w", i, err)
		}
		go s.Start()
		c.Servers = append(c.Servers, s)
		if !s.ReadyForConnections(10 * time.Second) {
			return fmt.Errorf("nats server %d did not accept clients and routes within 10s", i)
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
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("nats cluster did not form a full mesh within 15s")
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
