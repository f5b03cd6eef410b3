package diego_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/config"
	"github.com/cellagent/cellagent/integration/testagent"
)

// kit is a running Diego control plane (Locket, BBS, auctioneer, Postgres)
// started from diego-kit's start script into a temporary directory.
type kit struct {
	home string            // the kit: start, stop, bin/bbsctl
	dir  string            // DIR given to start
	env  map[string]string // DIR/env
}

// findKit looks for shared/diego beside the repository (or beside one of
// its parents: a worktree sits deeper than the main checkout). DIEGO_KIT
// overrides.
func findKit() (string, error) {
	if d := os.Getenv("DIEGO_KIT"); d != "" {
		return d, nil
	}
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	for dir := root; ; dir = filepath.Dir(dir) {
		cand := filepath.Join(dir, "..", "shared", "diego")
		if _, err := os.Stat(filepath.Join(cand, "start")); err == nil {
			return filepath.Clean(cand), nil
		}
		if dir == filepath.Dir(dir) {
			return "", fmt.Errorf("no shared/diego/start beside %s or its parents; set DIEGO_KIT", root)
		}
	}
}

// startKit runs start DIR on free ports. DIR is under /tmp so that
// PostgreSQL (running as user postgres) can reach it.
func startKit(home string, repTLS bool) (*kit, error) {
	dir, err := os.MkdirTemp("/tmp", "cellagent-diego-")
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	ports, err := testagent.FreePorts(5)
	if err != nil {
		return nil, err
	}
	k := &kit{home: home, dir: filepath.Join(dir, "cp")}
	cmd := exec.Command(filepath.Join(home, "start"), k.dir)
	cmd.Env = append(os.Environ(), "PG_PORT="+strconv.Itoa(ports[0]), "LOCKET_PORT="+strconv.Itoa(ports[1]),
		"BBS_PORT="+strconv.Itoa(ports[2]), "BBS_HEALTH_PORT="+strconv.Itoa(ports[3]),
		"AUCTIONEER_PORT="+strconv.Itoa(ports[4]), "CONVERGE_INTERVAL=10s", "REP_TLS="+map[bool]string{false: "0", true: "1"}[repTLS])
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("%s %s: %v\n%s", cmd.Path, k.dir, err, out)
	}
	f, err := os.Open(filepath.Join(k.dir, "env"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	k.env = map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if kv, ok := strings.CutPrefix(sc.Text(), "export "); ok {
			name, value, _ := strings.Cut(kv, "=")
			k.env[name] = value
		}
	}
	return k, sc.Err()
}

func (k *kit) stop() error {
	cmd := exec.Command(filepath.Join(k.home, "stop"), k.dir)
	cmd.Env = append(os.Environ(), "PURGE=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("stop: %v\n%s", err, out)
	}
	return os.RemoveAll(filepath.Dir(k.dir))
}

// bbsctl runs bbsctl against the kit's BBS with stdin and answers stdout.
func (k *kit) bbsctl(stdin string, args ...string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(k.home, "bin", "bbsctl"), args...)
	cmd.Env = append(os.Environ(), "BBS_URL="+k.env["BBS_URL"], "BBS_CA="+k.env["BBS_CA"],
		"BBS_CERT="+k.env["BBS_CERT"], "BBS_KEY="+k.env["BBS_KEY"])
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("bbsctl %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes(), nil
}

// cellPresence is the part of bbsctl's cells output the tests read.
type cellPresence struct {
	CellID          string `json:"cell_id"`
	RepAddress      string `json:"rep_address"`
	RootFSProviders []struct {
		Name       string   `json:"name"`
		Properties []string `json:"properties"`
	} `json:"rootfs_provider_list"`
}

func (k *kit) cells() ([]cellPresence, error) {
	out, err := k.bbsctl("", "cells")
	if err != nil {
		return nil, err
	}
	var cells []cellPresence
	if err := json.Unmarshal(out, &cells); err != nil {
		return nil, fmt.Errorf("cells output %q: %w", out, err)
	}
	return cells, nil
}

type portMapping struct {
	ContainerPort         uint32 `json:"container_port"`
	HostPort              uint32 `json:"host_port"`
	ContainerTLSProxyPort uint32 `json:"container_tls_proxy_port"`
	HostTLSProxyPort      uint32 `json:"host_tls_proxy_port"`
}

// actualLRP is the part of bbsctl's actual-lrps output the tests read.
type actualLRP struct {
	ProcessGUID     string        `json:"process_guid"`
	Index           int           `json:"index"`
	State           string        `json:"state"`
	Presence        string        `json:"presence"`
	CellID          string        `json:"cell_id"`
	InstanceGUID    string        `json:"instance_guid"`
	Address         string        `json:"address"`
	InstanceAddress string        `json:"instance_address"`
	Ports           []portMapping `json:"ports"`
	PlacementError  string        `json:"placement_error"`
	CrashCount      int           `json:"crash_count"`
	CrashReason     string        `json:"crash_reason"`
}

func (k *kit) actualLRPs(processGUID string) ([]actualLRP, error) {
	out, err := k.bbsctl("", "actual-lrps", "--process-guid", processGUID)
	if err != nil {
		return nil, err
	}
	var lrps []actualLRP
	if err := json.Unmarshal(out, &lrps); err != nil {
		return nil, fmt.Errorf("actual-lrps output %q: %w", out, err)
	}
	return lrps, nil
}

// waitActual waits (bounded by timeout) for count instances in state.
func (k *kit) waitActual(processGUID, state string, count int, timeout time.Duration) ([]actualLRP, error) {
	out, err := k.bbsctl("", "wait-actual", "--process-guid", processGUID, "--state", state,
		"--count", strconv.Itoa(count), "--exact", "--timeout", timeout.String())
	if err != nil {
		return nil, fmt.Errorf("%w\nlast states: %s", err, out)
	}
	var lrps []actualLRP
	return lrps, json.Unmarshal(out, &lrps)
}

// cellNetwork keeps each suite's agent off the other suites' networks.
type cellNetwork struct{ name, bridge, subnet, ports string }

// cellOptions are the settings that differ between the suites' cells.
type cellOptions struct {
	repTLS bool // REP_TLS=1: https rep URL, mutual TLS on the rep API
	proxy  bool // the TLS proxy beside each app (the agent's default)
	// natsURLs, when set, is the NATS the cell registers routes on
	// (instead of its embedded one): cells that share one NATS let a
	// spec see their route messages in one order.
	natsURLs []string
	// insecureRegistries are pulled from over plain HTTP (a test registry).
	insecureRegistries []string
}

// startCell starts a control plane (REP_TLS=1 with opts.repTLS) and a
// cellagent configured as its cell, and registers their cleanup. The
// cell uses the kit's cell certificate towards BBS and Locket and, with
// opts.repTLS, for the rep API too.
func startCell(name string, opts cellOptions, netw cellNetwork) (*kit, *testagent.Agent) {
	home, err := findKit()
	if err != nil {
		Skip("the Diego control plane kit is absent: " + err.Error())
	}
	k, err := startKit(home, opts.repTLS)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { Expect(k.stop()).To(Succeed()) })
	return k, startAgent(k, name, opts, netw)
}

// startAgent starts one more cell of k's control plane (opts.repTLS as
// k was started with) and registers its cleanup.
func startAgent(k *kit, name string, opts cellOptions, netw cellNetwork) *testagent.Agent {
	repPort, err := testagent.FreePort()
	Expect(err).NotTo(HaveOccurred())
	rep := config.DiegoRep{Listen: "127.0.0.1:" + strconv.Itoa(repPort), URL: "http://127.0.0.1:" + strconv.Itoa(repPort)}
	if opts.repTLS {
		rep.URL = "https://127.0.0.1:" + strconv.Itoa(repPort)
		rep.TLS = config.TLS{Cert: k.env["CELL_CERT"], Key: k.env["CELL_KEY"], ClientCA: k.env["CELL_CA"]}
	}
	agent, err := testagent.New(GinkgoT().TempDir(), name, func(c *config.Config) {
		c.Network.Mode = "bridge"
		c.Network.Name, c.Network.Bridge, c.Network.Subnet, c.Network.HostPortRange = netw.name, netw.bridge, netw.subnet, netw.ports
		c.Network.ExternalIP = "127.0.0.1"
		c.Proxy.Enabled = opts.proxy
		if len(opts.natsURLs) > 0 {
			c.NATS.URLs = opts.natsURLs
		}
		c.Containerd.InsecureRegistries = opts.insecureRegistries
		c.Diego = &config.Diego{
			BBS: config.DiegoBBS{URL: k.env["BBS_URL"], CACert: k.env["CELL_CA"], Cert: k.env["CELL_CERT"], Key: k.env["CELL_KEY"]},
			Locket: config.DiegoLocket{Address: k.env["LOCKET_ADDRESS"], CACert: k.env["LOCKET_CA"],
				Cert: k.env["LOCKET_CERT"], Key: k.env["LOCKET_KEY"]},
			Rep:    rep,
			Stacks: map[string]string{stack: "busybox"},
		}
	})
	Expect(err).NotTo(HaveOccurred())
	Expect(agent.Start()).To(Succeed())
	DeferCleanup(func() {
		if CurrentSpecReport().Failed() {
			GinkgoWriter.Println(agent.LogText())
			for _, n := range []string{"bbs", "auctioneer", "locket"} {
				b, _ := os.ReadFile(filepath.Join(k.dir, "logs", n+".log"))
				GinkgoWriter.Printf("--- %s log (tail)\n%s\n", n, tailLines(string(b), 40))
			}
		}
		agent.Cleanup()
	})
	return agent
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// relaunchExited starts again, as start does, each of names that has
// exited, and waits until it is up. BBS and the auctioneer exit when they
// lose their Locket lock (as in a Diego deployment, where BOSH restarts
// them); a test that takes Locket away uses this to play BOSH's part.
func (k *kit) relaunchExited(names ...string) error {
	for _, n := range names {
		pidFile := filepath.Join(k.dir, "run", n+".pid")
		b, err := os.ReadFile(pidFile)
		if err != nil {
			return err
		}
		if _, err := os.Stat("/proc/" + strings.TrimSpace(string(b))); err == nil {
			continue // still running
		}
		logPath := filepath.Join(k.dir, "logs", n+".log")
		before, _ := os.ReadFile(logPath)
		logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return err
		}
		cmd := exec.Command(filepath.Join(k.home, "bin", n), "-config="+filepath.Join(k.dir, "conf", n+".json"))
		cmd.Stdout, cmd.Stderr = logFile, logFile
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		err = cmd.Start()
		logFile.Close()
		if err != nil {
			return fmt.Errorf("relaunch %s: %w", n, err)
		}
		go func() { _ = cmd.Wait() }() // reap it when stop ends it
		if err := os.WriteFile(pidFile, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
			return err
		}
		started := fmt.Sprintf(`"message":"%s.started"`, n)
		deadline := time.Now().Add(90 * time.Second)
		for {
			now, _ := os.ReadFile(logPath)
			if strings.Count(string(now), started) > strings.Count(string(before), started) {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s did not log %s.started within 90s of its relaunch", n, n)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return nil
}

// taskOutcome is how BBS completed a task.
type taskOutcome struct {
	Failed        bool   `json:"failed"`
	FailureReason string `json:"failure_reason"`
	Result        string `json:"result"`
}

// runTask desires task (the JSON bbsctl reads), waits until BBS has it
// Completed and answers how it ended.
func (k *kit) runTask(task, guid string) taskOutcome {
	GinkgoHelper()
	_, err := k.bbsctl(task, "desire-task")
	Expect(err).NotTo(HaveOccurred())
	_, err = k.bbsctl("", "wait-task", guid, "--state", "Completed", "--timeout", waitLong.String())
	Expect(err).NotTo(HaveOccurred())
	out, err := k.bbsctl("", "task", guid)
	Expect(err).NotTo(HaveOccurred())
	var got taskOutcome
	Expect(json.Unmarshal(out, &got)).To(Succeed())
	return got
}
