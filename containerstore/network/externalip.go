package network

import (
	"bufio"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
)

// DefaultExternalIP returns the first IPv4 address of the interface that
// holds the default route, or 127.0.0.1 when there is no default route.
func DefaultExternalIP() net.IP {
	f, err := os.Open("/proc/net/route")
	if err != nil {
		return net.IPv4(127, 0, 0, 1).To4()
	}
	defer f.Close()
	return externalIPFrom(f, interfaceAddrs)
}

func interfaceAddrs(name string) ([]net.Addr, error) {
	iface, err := net.InterfaceByName(name)
	if err != nil {
		return nil, err
	}
	return iface.Addrs()
}

// externalIPFrom picks the address from a /proc/net/route table; addrs gives
// the addresses of an interface.
func externalIPFrom(routes io.Reader, addrs func(iface string) ([]net.Addr, error)) net.IP {
	loopback := net.IPv4(127, 0, 0, 1).To4()
	best, bestMetric := "", 0
	sc := bufio.NewScanner(routes)
	for sc.Scan() {
		// Iface Destination Gateway Flags RefCnt Use Metric Mask ...
		f := strings.Fields(sc.Text())
		if len(f) < 8 || f[1] != "00000000" || f[7] != "00000000" {
			continue
		}
		metric, err := strconv.Atoi(f[6])
		if err != nil {
			continue
		}
		if best == "" || metric < bestMetric {
			best, bestMetric = f[0], metric
		}
	}
	if best == "" {
		return loopback
	}
	as, err := addrs(best)
	if err != nil {
		return loopback
	}
	for _, a := range as {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() {
			return ipn.IP.To4()
		}
	}
	return loopback
}
