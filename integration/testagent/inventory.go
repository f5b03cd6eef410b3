package testagent

import (
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/cellagent/cellagent/containerstore/runtime"
	"github.com/cellagent/cellagent/executor"
)

// Inventory is everything that exists on the host for one agent, each
// resource keyed by the container guid it belongs to ("" when it cannot be
// attributed to any guid). It is taken from the outside (ctr, ip,
// iptables-save, the file system), not from the agent, so that it sees what
// the agent forgot.
type Inventory struct {
	// containerd, in the agent's namespace
	Containers []string
	Snapshots  []string // per-container snapshots (cellagent-<guid>)
	// ImportSnapshots are active preloaded-import snapshots: a crash while
	// importing a rootfs leaves them behind.
	ImportSnapshots []string
	Tasks           map[string]string // guid -> task status (RUNNING, STOPPED, ...)
	// Shims are the guids of containerd-shim-runc-v2 processes serving
	// the agent's namespace: one per task, gone with it.
	Shims []string

	// network
	Netns []string          // guids of /var/run/netns/<network>-<guid>
	Veths map[string]string // veth on the bridge -> guid of its peer's netns ("" unknown)
	Rules map[string]string // iptables rule of this network/subnet -> owner guid ("" unknown)
	IPAM  map[string]string // leased IP -> guid (host-local files)
	// NetState are <data_dir>/network/containers/<guid>.json; PortOwners the
	// owners of host ports in <data_dir>/network/ports.json.
	NetState   []string
	PortOwners []string

	// files under data_dir
	Credentials []string
	Proxy       []string
	Logs        []string
	Records     []string

	// Cgroups are the namespace's container cgroups, as the agent's
	// runtime adapter finds them (v1 or v2).
	Cgroups map[string][]string // guid -> hierarchy

	// RegisteredRoutes are the guids with registrations in the route
	// journal; Tombstones those whose unregistrations are still repeated.
	RegisteredRoutes []string
	Tombstones       []string
}

// TakeInventory lists everything that exists for a.
func TakeInventory(a *Agent) (Inventory, error) {
	cfg := a.Config
	inv := Inventory{Tasks: map[string]string{}, Veths: map[string]string{}, Rules: map[string]string{},
		IPAM: map[string]string{}, Cgroups: map[string][]string{}}
	var err error

	ctr := func(args ...string) ([]string, error) {
		out, err := exec.Command("ctr", append([]string{"--address", cfg.Containerd.Socket, "-n", cfg.Containerd.Namespace}, args...)...).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("ctr %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nonEmptyLines(string(out)), nil
	}
	if inv.Containers, err = ctr("containers", "ls", "-q"); err != nil {
		return inv, err
	}
	snaps, err := ctr("snapshots", "--snapshotter", "overlayfs", "ls")
	if err != nil {
		return inv, err
	}
	for _, l := range snaps[min(1, len(snaps)):] { // KEY PARENT KIND
		f := strings.Fields(l)
		key := f[0]
		switch {
		case strings.HasPrefix(key, "sha256:") && f[len(f)-1] == "Committed":
			// An unpacked image's layer: the image cache (a pulled
			// docker:// or an imported image), not a container's.
		case strings.HasPrefix(key, "cellagent-preloaded-") && strings.Contains(key, "-import-"):
			inv.ImportSnapshots = append(inv.ImportSnapshots, key)
		case strings.HasPrefix(key, "cellagent-preloaded-"):
		case strings.HasPrefix(key, "cellagent-"):
			inv.Snapshots = append(inv.Snapshots, strings.TrimPrefix(key, "cellagent-"))
		default:
			inv.Snapshots = append(inv.Snapshots, "?"+key)
		}
	}
	tasks, err := ctr("tasks", "ls")
	if err != nil {
		return inv, err
	}
	for _, l := range tasks[min(1, len(tasks)):] { // TASK PID STATUS
		if f := strings.Fields(l); len(f) >= 3 {
			inv.Tasks[f[0]] = f[2]
		}
	}

	shims, err := runtime.FindShims("/proc", cfg.Containerd.Namespace, cfg.Containerd.Socket)
	if err != nil {
		return inv, err
	}
	for _, s := range shims {
		inv.Shims = append(inv.Shims, s.ID)
	}

	prefix := cfg.Network.Name + "-"
	if entries, err := os.ReadDir("/var/run/netns"); err == nil {
		for _, e := range entries {
			if guid, ok := strings.CutPrefix(e.Name(), prefix); ok {
				inv.Netns = append(inv.Netns, guid)
			}
		}
	}
	if out, err := exec.Command("ip", "-o", "link", "show", "master", cfg.Network.Bridge).CombinedOutput(); err == nil {
		for _, l := range nonEmptyLines(string(out)) {
			f := strings.Fields(l)
			if len(f) < 2 {
				continue
			}
			name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
			owner := ""
			if m := regexp.MustCompile(`link-netns (\S+)`).FindStringSubmatch(l); m != nil {
				owner, _ = strings.CutPrefix(m[1], prefix)
			}
			inv.Veths[name] = owner
		}
	} // a missing bridge has no veths

	if inv.Rules, err = networkRules(cfg.Network.Name, cfg.Network.Subnet); err != nil {
		return inv, err
	}

	ipamDir := filepath.Join(cfg.DataDir, "network", "ipam", cfg.Network.Name)
	if entries, err := os.ReadDir(ipamDir); err == nil {
		for _, e := range entries {
			if net.ParseIP(e.Name()) == nil {
				continue // lock, last_reserved_ip.0
			}
			b, _ := os.ReadFile(filepath.Join(ipamDir, e.Name()))
			id, _, _ := strings.Cut(string(b), "\n")
			inv.IPAM[e.Name()] = strings.TrimSpace(id)
		}
	}
	inv.NetState = namesIn(filepath.Join(cfg.DataDir, "network", "containers"), ".json")
	var ports struct {
		InUse map[string][]uint16 `json:"in_use"`
	}
	if b, err := os.ReadFile(filepath.Join(cfg.DataDir, "network", "ports.json")); err == nil {
		if err := json.Unmarshal(b, &ports); err != nil {
			return inv, fmt.Errorf("ports.json: %w", err)
		}
		for owner := range ports.InUse {
			inv.PortOwners = append(inv.PortOwners, owner)
		}
	}

	inv.Credentials = namesIn(filepath.Join(cfg.DataDir, "credentials"), "")
	inv.Proxy = namesIn(filepath.Join(cfg.DataDir, "proxy"), "")
	inv.Logs = namesIn(filepath.Join(cfg.DataDir, "logs"), "")
	// A record is <guid>.json; .<guid>.json.tmp-N (<guid>.json.tmp from an
	// older agent) is a write that did not finish.
	for _, name := range namesIn(filepath.Join(cfg.DataDir, "containers"), "") {
		guid, _, _ := strings.Cut(strings.TrimPrefix(name, "."), ".json")
		inv.Records = append(inv.Records, guid)
	}

	cgroups := runtime.NewCgroups(runtime.DefaultCgroupRoot, cfg.Containerd.Namespace)
	hierarchy := "cgroup v1"
	if cgroups.Unified() {
		hierarchy = "cgroup v2"
	}
	for guid := range cgroups.IDs() {
		inv.Cgroups[guid] = []string{hierarchy}
	}

	var journal struct {
		Registered map[string]json.RawMessage `json:"registered"`
		Tombstones map[string]json.RawMessage `json:"tombstones"`
	}
	if b, err := os.ReadFile(filepath.Join(cfg.DataDir, "routeemitter", "routes.json")); err == nil {
		if err := json.Unmarshal(b, &journal); err != nil {
			return inv, fmt.Errorf("route journal: %w", err)
		}
		for g := range journal.Registered {
			inv.RegisteredRoutes = append(inv.RegisteredRoutes, g)
		}
		for g := range journal.Tombstones {
			inv.Tombstones = append(inv.Tombstones, g)
		}
	}
	for _, s := range [][]string{inv.Containers, inv.Shims, inv.Snapshots, inv.Netns, inv.NetState, inv.PortOwners,
		inv.Credentials, inv.Proxy, inv.Logs, inv.Records, inv.RegisteredRoutes, inv.Tombstones} {
		sort.Strings(s)
	}
	return inv, nil
}

// Problems compares the inventory with what the agent lists and names,
// one line each, every resource of a guid the agent does not list
// (orphans), every task still running for a container the agent reports
// completed, and every journaled registration of a container that is not
// running.
func (inv Inventory) Problems(listed []executor.Container) []string {
	known := map[string]executor.Container{}
	for _, c := range listed {
		known[c.GUID] = c
	}
	var out []string
	orphan := func(kind, guid, detail string) {
		if _, ok := known[guid]; ok && guid != "" {
			return
		}
		line := fmt.Sprintf("orphaned %s of %q", kind, guid)
		if guid == "" {
			line = "orphaned " + kind + " (no owner)"
		}
		if detail != "" {
			line += ": " + detail
		}
		out = append(out, line)
	}
	for _, set := range []struct {
		kind  string
		guids []string
	}{
		{"containerd container", inv.Containers}, {"shim process", inv.Shims}, {"snapshot", inv.Snapshots}, {"netns", inv.Netns},
		{"network state", inv.NetState}, {"host ports", inv.PortOwners}, {"credential dir", inv.Credentials},
		{"proxy dir", inv.Proxy}, {"log dir", inv.Logs}, {"record", inv.Records},
		{"journaled registration", inv.RegisteredRoutes},
	} {
		for _, g := range set.guids {
			orphan(set.kind, g, "")
		}
	}
	for _, key := range inv.ImportSnapshots {
		orphan("import snapshot", "", key)
	}
	for g, st := range inv.Tasks {
		orphan("task", g, st)
	}
	for veth, g := range inv.Veths {
		orphan("veth", g, veth)
	}
	for rule, g := range inv.Rules {
		orphan("nat rule", g, rule)
	}
	for ip, g := range inv.IPAM {
		orphan("IPAM lease", g, ip)
	}
	for g, ctrls := range inv.Cgroups {
		orphan("cgroup", g, strings.Join(ctrls, ","))
	}
	for g, st := range inv.Tasks {
		if c, ok := known[g]; ok && c.State == executor.StateCompleted && st == "RUNNING" {
			out = append(out, fmt.Sprintf("task of %q still RUNNING but the agent reports it completed (%s)", g, c.RunResult.FailureReason))
		}
	}
	for _, g := range inv.RegisteredRoutes {
		if c, ok := known[g]; ok && c.State != executor.StateRunning {
			out = append(out, fmt.Sprintf("journaled registration of %q, which is %s", g, c.State))
		}
	}
	sort.Strings(out)
	return out
}

// Empty reports what exists at all (for after every container is deleted):
// the same lines as Problems with nothing listed, tombstones excepted
// (they are repeated on purpose for a while after a delete).
func (inv Inventory) Empty() []string { return inv.Problems(nil) }

// Count is a one-line summary for logs.
func (inv Inventory) Count() string {
	return fmt.Sprintf("containers=%d shims=%d snapshots=%d tasks=%d netns=%d veths=%d rules=%d ipam=%d creds=%d proxy=%d logs=%d records=%d cgroups=%d routes=%d tombstones=%d",
		len(inv.Containers), len(inv.Shims), len(inv.Snapshots), len(inv.Tasks), len(inv.Netns), len(inv.Veths), len(inv.Rules),
		len(inv.IPAM), len(inv.Credentials), len(inv.Proxy), len(inv.Logs), len(inv.Records), len(inv.Cgroups),
		len(inv.RegisteredRoutes), len(inv.Tombstones))
}

// NetworkRules answers the iptables rules (nat and filter, as
// "<table>: <iptables-save line>") that belong to the CNI network or
// mention an address of subnet, and the container parts of the agent's
// nftables table ("nft: <line>": host port forwards and their chains),
// each with its owner guid ("" unknown).
func NetworkRules(network, subnet string) (map[string]string, error) {
	return networkRules(network, subnet)
}

var ipv4Re = regexp.MustCompile(`\b(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})(/\d+)?`)

// networkRules answers the nat and filter rules that belong to network or
// mention an address inside subnet, each with its owner guid: the id of
// the CNI plugins' comment ("name: \"<network>\" id: \"<guid>\""), or, for
// rules in a per-container chain (portmap's CNI-DN-..., bridge's masquerade
// chain), the owner of the commented rule that jumps to that chain.
func networkRules(network, subnet string) (map[string]string, error) {
	_, ipnet, err := net.ParseCIDR(subnet)
	if err != nil {
		return nil, err
	}
	commentRe := regexp.MustCompile(`name: \\"` + regexp.QuoteMeta(network) + `\\" id: \\"([^\\"]+)\\"`)
	var rules []string
	for _, table := range []string{"nat", "filter"} {
		out, err := exec.Command("iptables-save", "-t", table).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("iptables-save -t %s: %v: %s", table, err, out)
		}
		for _, l := range nonEmptyLines(string(out)) {
			if strings.HasPrefix(l, "-A ") {
				rules = append(rules, table+": "+l)
			}
		}
	}
	chainOwner := map[string]string{}
	for _, r := range rules {
		if m := commentRe.FindStringSubmatch(r); m != nil {
			if j := jumpTarget(r); strings.HasPrefix(j, "CNI-") && !strings.HasPrefix(j, "CNI-HOSTPORT-") {
				chainOwner[j] = m[1]
			}
		}
	}
	out := map[string]string{}
	for _, r := range rules {
		owner, mine := "", false
		if m := commentRe.FindStringSubmatch(r); m != nil {
			owner, mine = m[1], true
		} else if g, ok := chainOwner[ruleChain(r)]; ok {
			owner, mine = g, true
		} else {
			for _, m := range ipv4Re.FindAllStringSubmatch(r, -1) {
				if ip := net.ParseIP(m[1]); ip != nil && ipnet.Contains(ip) {
					mine = true
				}
			}
		}
		if mine {
			out[r] = owner
		}
	}
	nftRules, err := NFTContainerRules(network)
	if err != nil {
		return nil, err
	}
	maps.Copy(out, nftRules)
	return out, nil
}

var nftGotoRe = regexp.MustCompile(`^(\S+)(?: comment "[^"]*")? : goto ([cei])_(\S+)$`)

// NFTContainerRules answers the container parts of the agent's nftables
// table of network (ip cellagent_<network>), each with its guid: the map
// elements "PORT : goto c_<guid>" (host ports) and "IP : goto e_|i_<guid>"
// (the filter's dispatch), the chains c_, e_, i_<guid> and their rules, the
// counters e_, i_<guid>, and each address in a log guid set (lg_...),
// attributed through the egress map. An address in a set that no egress
// element names is attributed to "" (a leak).
func NFTContainerRules(network string) (map[string]string, error) {
	table := "cellagent_" + network
	out := map[string]string{}
	b, err := exec.Command("nft", "list", "table", "ip", table).CombinedOutput()
	if err != nil {
		if strings.Contains(string(b), "No such file or directory") {
			return out, nil
		}
		return nil, fmt.Errorf("nft list table %s: %v: %s", table, err, b)
	}
	perContainer := func(name string) (string, bool) {
		for _, p := range []string{"c_", "e_", "i_"} {
			if g, ok := strings.CutPrefix(name, p); ok {
				return g, true
			}
		}
		return "", false
	}
	ipOwner := map[string]string{}
	var setElems []string
	block := ""
	for _, l := range nonEmptyLines(string(b)) {
		l = strings.TrimSpace(l)
		if f := strings.Fields(l); len(f) == 3 && f[2] == "{" && (f[0] == "chain" || f[0] == "set" || f[0] == "map" || f[0] == "counter") {
			block = f[0] + " " + f[1]
			if g, ok := perContainer(f[1]); ok && f[0] != "map" {
				out["nft: "+block] = g
			}
			continue
		}
		if l == "}" {
			block = ""
			continue
		}
		kind, name, _ := strings.Cut(block, " ")
		if g, ok := perContainer(name); ok && kind == "chain" {
			out["nft: "+name+": "+l] = g
			continue
		}
		if kind != "set" && kind != "map" {
			continue
		}
		for _, part := range strings.Split(strings.TrimPrefix(l, "elements = { "), ",") {
			part = strings.TrimSpace(strings.Trim(strings.TrimSpace(part), "}"))
			if part == "" || strings.HasPrefix(part, "type ") || strings.HasPrefix(part, "flags ") {
				continue
			}
			if m := nftGotoRe.FindStringSubmatch(part); m != nil {
				out["nft: "+name+" "+part] = m[3]
				if name == "egress" {
					ipOwner[m[1]] = m[3]
				}
				continue
			}
			if strings.HasPrefix(name, "lg_") && net.ParseIP(part) != nil {
				setElems = append(setElems, name+" "+part)
			}
		}
	}
	for _, e := range setElems {
		_, ip, _ := strings.Cut(e, " ")
		out["nft: set "+e] = ipOwner[ip]
	}
	return out, nil
}

func ruleChain(rule string) string {
	_, rest, _ := strings.Cut(rule, "-A ")
	chain, _, _ := strings.Cut(rest, " ")
	return chain
}

func jumpTarget(rule string) string {
	_, rest, ok := strings.Cut(rule, " -j ")
	if !ok {
		return ""
	}
	target, _, _ := strings.Cut(rest, " ")
	return target
}

func namesIn(dir, suffix string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		name := e.Name()
		if suffix != "" {
			var ok bool
			if name, ok = strings.CutSuffix(name, suffix); !ok {
				continue
			}
		}
		out = append(out, name)
	}
	return out
}

func nonEmptyLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}
