package network

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// mapLink forwards guid's host ports in one netlink batch: chain c_<guid>
// with "tcp dport H dnat to IP:P" per mapping, and "H : goto c_<guid>" in
// the hostports map. A port whose element leads to another chain fails
// the whole batch (the kernel answers EBUSY), rules included.
func (n NFTables) mapLink(guid string, ip net.IP, ports []PortMapping) error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	t := n.nlTable()
	ch := c.AddChain(&nftables.Chain{Name: chainPrefix + guid, Table: t})
	c.FlushChain(ch)
	mark := forwardMark(guid, ip, ports)
	var elems []nftables.SetElement
	for _, p := range ports {
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.BigEndian.AppendUint16(nil, p.HostPort)},
			&expr.Immediate{Register: 1, Data: ip.To4()},
			&expr.Immediate{Register: 2, Data: binary.BigEndian.AppendUint16(nil, p.ContainerPort)},
			&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
		}})
		elems = append(elems, nftables.SetElement{Key: binary.BigEndian.AppendUint16(nil, p.HostPort),
			VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: ch.Name}, Comment: mark})
	}
	m, err := n.dispatchMap(c, "hostports")
	if err != nil {
		return err
	}
	// The kernel keeps the comment of an element that is added again:
	// ours with another mark (an earlier Map) are replaced. No element
	// leads to a chain that is not there (the kernel refuses to delete a
	// chain an element leads to): a first Map does not read the map, a
	// dump of every container's ports.
	existed, err := n.chainExists(ch.Name)
	if err != nil {
		return err
	}
	if existed {
		have, err := c.GetSetElements(m)
		if err != nil {
			return fmt.Errorf("list hostports map: %w", err)
		}
		for _, el := range have {
			if verdictChain(el) == ch.Name && el.Comment != mark {
				if err := c.SetDeleteElements(m, []nftables.SetElement{{Key: el.Key}}); err != nil {
					return err
				}
			}
		}
	}
	if err := c.SetAddElements(m, elems); err != nil {
		return err
	}
	return c.Flush()
}

// chainExists asks the kernel for one chain of the table (the library's
// ListChain hides the errno of its answer).
func (n NFTables) chainExists(name string) (bool, error) {
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	ae := netlink.NewAttributeEncoder()
	ae.String(unix.NFTA_CHAIN_TABLE, n.table())
	ae.String(unix.NFTA_CHAIN_NAME, name)
	attrs, err := ae.Encode()
	if err != nil {
		return false, err
	}
	// nfgenmsg: family, version, resource id.
	_, err = conn.Execute(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETCHAIN), Flags: netlink.Request},
		Data:   append([]byte{unix.NFPROTO_IPV4, unix.NFNETLINK_V0, 0, 0}, attrs...),
	})
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, unix.ENOENT):
		return false, nil
	default:
		return false, fmt.Errorf("get chain %s: %w", name, err)
	}
}

// unmapLink removes guid's forwards: every hostports element that leads
// to c_<guid>, and the chain. A batch the kernel refuses with ENOENT (an
// element or the chain it was told to delete was not there) is made again
// from a new listing, up to three times: a listing dumped while another
// container's batch committed may be inconsistent (the kernel marks such
// a dump interrupted), and a diego CI run saw a teardown fail so,
// concurrent with another container's set-up, and the instance left.
func (n NFTables) unmapLink(guid string) error {
	var err error
	for range 3 {
		if err = n.unmapLinkOnce(guid); !errors.Is(err, unix.ENOENT) {
			return err
		}
	}
	return err
}

func (n NFTables) unmapLinkOnce(guid string) error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	t := n.nlTable()
	chain := chainPrefix + guid
	m, err := n.dispatchMap(c, "hostports")
	if err != nil {
		return err
	}
	elems, err := c.GetSetElements(m)
	if err != nil {
		return fmt.Errorf("list hostports map: %w", err)
	}
	deleted := map[string]bool{}
	for _, el := range elems {
		// hostPorts need not be asked for: an element of another
		// container's chain is not ours to remove. Each key once: a
		// second delete of it in the batch would fail the batch.
		if verdictChain(el) == chain && !deleted[string(el.Key)] {
			deleted[string(el.Key)] = true
			if err := c.SetDeleteElements(m, []nftables.SetElement{{Key: el.Key}}); err != nil {
				return err
			}
		}
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return fmt.Errorf("list chains: %w", err)
	}
	for _, ch := range chains {
		if ch.Table.Name == t.Name && ch.Name == chain {
			c.FlushChain(ch)
			c.DelChain(ch)
		}
	}
	return c.Flush()
}

// listLink reads what the table holds per container through netlink.
func (n NFTables) listLink() (nftTable, error) {
	tbl := nftTable{ports: map[string][]uint16{}, addrs: map[string][]string{}, setsOf: map[string][]string{},
		denied: map[string]map[string]uint64{}, held: map[string]Held{}}
	c, err := nftables.New()
	if err != nil {
		return tbl, err
	}
	t := n.nlTable()
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return tbl, fmt.Errorf("list tables: %w", err)
	}
	if !slices.ContainsFunc(tables, func(x *nftables.Table) bool { return x.Name == t.Name }) {
		return tbl, nil // no table: nothing there
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return tbl, fmt.Errorf("list chains: %w", err)
	}
	for _, ch := range chains {
		if guid, _, ok := guidOfChain(ch.Name); ok && ch.Table.Name == t.Name {
			if _, seen := tbl.ports[guid]; !seen {
				tbl.ports[guid] = nil
			}
		}
	}
	sets, err := c.GetSets(t)
	if err != nil {
		return tbl, fmt.Errorf("list sets: %w", err)
	}
	forwardMarks, egressMarks, ingressMarks := markSet{}, markSet{}, markSet{}
	for _, s := range sets {
		if s.Name != "hostports" && s.Name != "egress" && s.Name != "ingress" && !strings.HasPrefix(s.Name, logSetPrefix) {
			continue
		}
		elems, err := c.GetSetElements(s)
		if err != nil {
			return tbl, fmt.Errorf("list set %s: %w", s.Name, err)
		}
		for _, el := range elems {
			switch {
			case s.Name == "hostports" && len(el.Key) == 2:
				if guid, ok := strings.CutPrefix(verdictChain(el), chainPrefix); ok {
					tbl.ports[guid] = append(tbl.ports[guid], binary.BigEndian.Uint16(el.Key))
					forwardMarks.add(guid, el.Comment)
				}
			case s.Name == "egress" && len(el.Key) == 4:
				if guid, ok := strings.CutPrefix(verdictChain(el), egressPrefix); ok {
					tbl.addrs[guid] = append(tbl.addrs[guid], net.IP(el.Key).String())
					egressMarks.add(guid, el.Comment)
				}
			case s.Name == "ingress" && len(el.Key) == 4:
				if guid, ok := strings.CutPrefix(verdictChain(el), ingressPrefix); ok {
					ingressMarks.add(guid, el.Comment)
				}
			case len(el.Key) == 4:
				ip := net.IP(el.Key).String()
				tbl.setsOf[ip] = append(tbl.setsOf[ip], s.Name)
			}
		}
	}
	objs, err := c.GetObjects(t)
	if err != nil {
		return tbl, fmt.Errorf("list counters: %w", err)
	}
	for _, o := range objs {
		co, ok := o.(*nftables.CounterObj)
		if !ok {
			continue
		}
		if guid, dir, ok := guidOfChain(co.Name); ok && dir != "" {
			if tbl.denied[guid] == nil {
				tbl.denied[guid] = map[string]uint64{}
			}
			tbl.denied[guid][dir] = co.Packets
		}
	}
	for guid := range tbl.ports {
		slices.Sort(tbl.ports[guid])
		h := Held{ForwardMark: forwardMarks[guid]}
		if len(tbl.ports[guid]) > 0 {
			h.HostPorts = tbl.ports[guid]
		}
		if e := egressMarks[guid]; e != "" && e == ingressMarks[guid] {
			h.FilterMark = e
		}
		tbl.held[guid] = h
	}
	return tbl, nil
}

// markSet collects the one mark each guid's elements carry: a guid whose
// elements disagree (or carry none) gets "".
type markSet map[string]string

func (ms markSet) add(guid, comment string) {
	if have, seen := ms[guid]; seen && have != comment {
		comment = ""
	}
	ms[guid] = comment
}
