package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/config"
	"github.com/cellagent/cellagent/executor"
)

var _ = Describe("Config", func() {
	Describe("DefaultConfig", func() {
		It("is valid as it is", func() {
			Expect(config.DefaultConfig().Validate()).To(Succeed())
		})

		It("is what an empty path loads", func() {
			cfg, err := config.Load("")
			Expect(err).NotTo(HaveOccurred())
			Expect(cfg).To(Equal(config.DefaultConfig()))
		})
	})

	Describe("Validate", func() {
		It("reports every problem at once", func() {
			cfg := config.DefaultConfig()
			cfg.Zone = ""
			cfg.DataDir = "var/lib/cellagent"
			cfg.LogLevel = "loud"
			cfg.Network.HostPortRange = "60000-50000"
			cfg.StopGrace = 0
			cfg.Proxy.Kind = "envoy"
			err := cfg.Validate()
			Expect(err).To(HaveOccurred())
			var joined interface{ Unwrap() []error }
			Expect(errors.As(err, &joined)).To(BeTrue())
			Expect(joined.Unwrap()).To(HaveLen(6))
			Expect(err.Error()).To(And(
				ContainSubstring("zone must not be empty"),
				ContainSubstring(`data_dir "var/lib/cellagent" must be an absolute path`),
				ContainSubstring(`log_level "loud"`),
				ContainSubstring("network.host_port_range"),
				ContainSubstring("stop_grace must be positive"),
				ContainSubstring("proxy.kind envoy needs proxy.binary"),
			))
		})

		DescribeTable("refuses each bad setting with a message naming the key",
			func(mutate func(*config.Config), message string) {
				cfg := config.DefaultConfig()
				mutate(&cfg)
				err := cfg.Validate()
				Expect(err).To(MatchError(ContainSubstring(message)))
			},
			Entry("cell id with a slash", func(c *config.Config) { c.CellID = "a/b" }, "cell_id"),
			Entry("cellinit with Envoy (issue 16)", func(c *config.Config) {
				on := true
				c.Proxy.Kind, c.Proxy.Binary, c.Proxy.Init = "envoy", "/opt/envoy", &on
			}, "proxy.init runs cellproxy only"),
			Entry("host mode with the plain loopback admin API (issue 13 item 10)", func(c *config.Config) { c.Network.Mode = "host" },
				"network.mode host: listen.admin 127.0.0.1:1800 is plain HTTP on loopback"),
			Entry("host mode with an external NATS without credentials", func(c *config.Config) {
				c.Network.Mode = "host"
				c.Listen.Admin = "10.0.0.5:1800"
				c.Listen.TLS = config.TLS{Cert: "/c", Key: "/k", ClientCA: "/ca"}
				c.NATS.URLs = []string{"nats://cell:pw@10.0.0.1:4222", "nats://10.0.0.2:4222"}
			}, "nats.urls carry no user"),
			Entry("embedded NATS off loopback (issue 13 item 9)", func(c *config.Config) { c.NATS.EmbeddedListen = "0.0.0.0:4222" }, "nats.embedded_listen \"0.0.0.0:4222\" must be a loopback address"),
			Entry("embedded NATS user without password", func(c *config.Config) { c.NATS.EmbeddedAuth.User = "u" }, "nats.embedded_auth.user and nats.embedded_auth.password go together"),
			Entry("nkey seed without an external NATS", func(c *config.Config) { c.NATS.NKeySeedFile = "/etc/hosts" }, "are for an external NATS"),
			Entry("nkey seed file missing", func(c *config.Config) {
				c.NATS.URLs = []string{"nats://10.0.0.1:4222"}
				c.NATS.NKeySeedFile = "/nonexistent/cell.nk"
			}, `nats.nkey_seed_file "/nonexistent/cell.nk"`),
			Entry("default_max_pids too small", func(c *config.Config) { c.DefaultMaxPids = 0 }, "default_max_pids 0"),
			Entry("a root proxy user", func(c *config.Config) { c.Proxy.UID = 0 }, "proxy.uid and proxy.gid must not be 0"),
			Entry("64-character cell id", func(c *config.Config) { c.CellID = string(make([]byte, 64)) }, "cell_id"),
			Entry("bad default egress rule", func(c *config.Config) {
				c.Network.Egress.Default = []executor.EgressRule{{Protocol: "tcp", Destinations: []string{"10.0.0.0/33"}}}
			}, `network.egress.default[0].destinations[0]: "10.0.0.0/33": not an IPv4 CIDR`),
			Entry("no containerd socket", func(c *config.Config) { c.Containerd.Socket = "" }, "containerd.socket"),
			Entry("bad namespace", func(c *config.Config) { c.Containerd.Namespace = "-ns" }, "containerd.namespace"),
			Entry("an insecure registry with a scheme", func(c *config.Config) { c.Containerd.InsecureRegistries = []string{"http://127.0.0.1:5000"} }, "containerd.insecure_registries"),
			Entry("an insecure registry with a path", func(c *config.Config) { c.Containerd.InsecureRegistries = []string{"registry.example.com/team"} }, "containerd.insecure_registries"),
			Entry("no pull timeout", func(c *config.Config) { c.Containerd.PullTimeout = 0 }, "containerd.pull_timeout"),
			Entry("admin without a port", func(c *config.Config) { c.Listen.Admin = "127.0.0.1" }, "listen.admin"),
			Entry("admin on a public address without TLS", func(c *config.Config) { c.Listen.Admin = "0.0.0.0:1800" }, "is not a loopback address"),
			Entry("admin on a public address without client certificates", func(c *config.Config) {
				c.Listen.Admin = "0.0.0.0:1800"
				c.Listen.TLS = config.TLS{Cert: "/c", Key: "/k"}
			}, "is not a loopback address"),
			Entry("secure listener without a client CA", func(c *config.Config) {
				c.Listen.Secure = "0.0.0.0:1801"
				c.Listen.TLS = config.TLS{Cert: "/c", Key: "/k"}
			}, "listen.secure needs"),
			Entry("negative memory", func(c *config.Config) { c.Capacity.MemoryMB = -1 }, "capacity.memory_mb"),
			Entry("no container slots", func(c *config.Config) { c.Capacity.MaxContainers = 0 }, "capacity.max_containers"),
			Entry("relative preloaded rootfs", func(c *config.Config) { c.PreloadedRootfs = map[string]string{"b": "rootfs"} }, "preloaded_rootfs b"),
			Entry("bad key type", func(c *config.Config) { c.Identity.KeyType = "rsa-1024" }, "identity.key_type"),
			Entry("CA cert without key", func(c *config.Config) { c.Identity.CACert = "/ca.crt" }, "must be set together"),
			Entry("short validity", func(c *config.Config) { c.Identity.Validity = config.Duration(time.Second) }, "identity.validity"),
			Entry("unknown proxy kind", func(c *config.Config) { c.Proxy.Kind = "nginx" }, "proxy.kind"),
			Entry("negative proxy overhead", func(c *config.Config) { c.Proxy.MemoryOverheadMB = -1 }, "proxy.memory_overhead_mb"),
			Entry("client certs without a CA", func(c *config.Config) { c.Proxy.RequireClientCerts = true }, "proxy.trusted_ca"),
			Entry("unknown network mode", func(c *config.Config) { c.Network.Mode = "overlay" }, "network.mode"),
			Entry("bad subnet", func(c *config.Config) { c.Network.Subnet = "10.0.0.0" }, "network.subnet"),
			Entry("bad external ip", func(c *config.Config) { c.Network.ExternalIP = "cell.example.com" }, "network.external_ip"),
			Entry("network name with capitals", func(c *config.Config) { c.Network.Name = "Cell" }, "network.name"),
			Entry("bridge name too long for Linux", func(c *config.Config) { c.Network.Bridge = "cellagent-bridge0" }, "network.bridge"),
			Entry("negative quarantine", func(c *config.Config) { c.Network.PortQuarantine = -1 }, "network.port_quarantine"),
			Entry("negative pool size", func(c *config.Config) { c.Network.PoolSize = -1 }, "network.pool_size -1"),
			Entry("pool size beyond its bound", func(c *config.Config) { c.Network.PoolSize = 100000 }, "network.pool_size 100000"),
			Entry("nats url without scheme", func(c *config.Config) { c.NATS.URLs = []string{"10.0.0.1:4222"} }, "nats.urls"),
			Entry("bad embedded listen", func(c *config.Config) { c.NATS.EmbeddedListen = "4222" }, "nats.embedded_listen"),
			Entry("nats tls for the embedded server", func(c *config.Config) { c.NATS.TLS.CACert = "/etc/hosts" }, "set nats.urls too"),
			Entry("nats tls without a CA", func(c *config.Config) {
				c.NATS.URLs = []string{"tls://10.0.0.1:4222"}
				c.NATS.TLS = config.NATSTLS{Cert: "/etc/hosts", Key: "/etc/hosts"}
			}, "nats.tls.ca_cert is required"),
			Entry("nats client cert without key", func(c *config.Config) {
				c.NATS.URLs = []string{"tls://10.0.0.1:4222"}
				c.NATS.TLS = config.NATSTLS{CACert: "/etc/hosts", Cert: "/etc/hosts"}
			}, "nats.tls.cert and nats.tls.key go together"),
			Entry("nats CA file missing", func(c *config.Config) {
				c.NATS.URLs = []string{"tls://10.0.0.1:4222"}
				c.NATS.TLS = config.NATSTLS{CACert: "/nonexistent/nats-ca.pem"}
			}, "nats.tls.ca_cert \"/nonexistent/nats-ca.pem\""),
			Entry("relative bind mount", func(c *config.Config) { c.BindMountAllowlist = []string{"tmp"} }, "bind_mount_allowlist"),
			Entry("an allowlist entry holding data_dir (issue 13 item 4)", func(c *config.Config) { c.BindMountAllowlist = []string{"/var/lib"} },
				"bind_mount_allowlist: /var/lib contains data_dir (/var/lib/cellagent)"),
			Entry("an allowlist entry that is data_dir", func(c *config.Config) { c.BindMountAllowlist = []string{"/var/lib/cellagent/"} }, "contains data_dir"),
			Entry("an allowlist entry holding containerd's root", func(c *config.Config) { c.BindMountAllowlist = []string{"/var/lib/containerd"} }, "contains containerd's /var/lib/containerd"),
			Entry("the root as an allowlist entry", func(c *config.Config) { c.BindMountAllowlist = []string{"/"} }, "contains data_dir"),
			Entry("relative trusted certificates dir", func(c *config.Config) { c.TrustedSystemCertificatesDir = "certs" }, "trusted_system_certificates_dir"),
			Entry("missing trusted certificates dir", func(c *config.Config) { c.TrustedSystemCertificatesDir = "/nonexistent/certs" }, "trusted_system_certificates_dir"),
			Entry("trusted certificates dir that is a file", func(c *config.Config) { c.TrustedSystemCertificatesDir = "/etc/hosts" }, "trusted_system_certificates_dir"),
			Entry("zero reserved expiration", func(c *config.Config) { c.ReservedExpiration = 0 }, "reserved_expiration must be positive"),
			Entry("negative start timeout", func(c *config.Config) { c.StartTimeout = -1 }, "start_timeout must be positive"),
			Entry("zero evacuation timeout", func(c *config.Config) { c.EvacuationTimeout = 0 }, "evacuation_timeout must be positive"),
			Entry("no default user", func(c *config.Config) { c.DefaultUser = "" }, "default_user"),
			Entry("tiny log cap", func(c *config.Config) { c.LogMaxBytes = 4095 }, "log_max_bytes"),
		)

		DescribeTable("accepts these variations",
			func(mutate func(*config.Config)) {
				cfg := config.DefaultConfig()
				mutate(&cfg)
				Expect(cfg.Validate()).To(Succeed())
			},
			Entry("admin on localhost", func(c *config.Config) { c.Listen.Admin = "localhost:1800" }),
			Entry("admin on IPv6 loopback", func(c *config.Config) { c.Listen.Admin = "[::1]:1800" }),
			Entry("admin on a public address with mutual TLS", func(c *config.Config) {
				c.Listen.Admin = "0.0.0.0:1800"
				c.Listen.TLS = config.TLS{Cert: "/c", Key: "/k", ClientCA: "/ca"}
			}),
			Entry("external NATS (the embedded listen is then unused)", func(c *config.Config) {
				c.NATS.URLs = []string{"nats://10.0.0.1:4222", "tls://10.0.0.2:4222"}
				c.NATS.EmbeddedListen = ""
			}),
			Entry("envoy with a binary", func(c *config.Config) { c.Proxy.Kind, c.Proxy.Binary = "envoy", "/usr/bin/envoy" }),
			Entry("host networking, single-tenant", func(c *config.Config) { c.Network.Mode, c.Network.HostSingleTenant = "host", true }),
			Entry("host networking with a mutual-TLS admin API and the embedded NATS (which requires a user)", func(c *config.Config) {
				c.Network.Mode = "host"
				c.Listen.Admin = "10.0.0.5:1800"
				c.Listen.TLS = config.TLS{Cert: "/c", Key: "/k", ClientCA: "/ca"}
			}),
			Entry("host networking with a mutual-TLS admin API and an external NATS with a user", func(c *config.Config) {
				c.Network.Mode = "host"
				c.Listen.Admin = "10.0.0.5:1800"
				c.Listen.TLS = config.TLS{Cert: "/c", Key: "/k", ClientCA: "/ca"}
				c.NATS.URLs = []string{"nats://cell:pw@10.0.0.1:4222"}
			}),
			Entry("detected capacity", func(c *config.Config) { c.Capacity.MemoryMB, c.Capacity.DiskMB = 0, 0 }),
		)
	})

	Describe("Decode", func() {
		It("decodes over the defaults, keeping what the file leaves out", func() {
			cfg := config.DefaultConfig()
			Expect(config.Decode([]byte(`{"zone":"z2","network":{"mode":"host","host_single_tenant":true},"capacity":{"memory_mb":2048}}`), &cfg)).To(Succeed())
			Expect(cfg.Zone).To(Equal("z2"))
			Expect(cfg.Network.Mode).To(Equal("host"))
			Expect(cfg.Network.Subnet).To(Equal("10.255.0.0/22"))
			Expect(cfg.Capacity.MemoryMB).To(Equal(2048))
			Expect(cfg.Capacity.MaxContainers).To(Equal(250))
			Expect(cfg.Validate()).To(Succeed())
		})

		It("reads the registries pulled from over plain HTTP and the pull timeout, keeping the socket", func() {
			cfg := config.DefaultConfig()
			Expect(config.Decode([]byte(`{"containerd":{"insecure_registries":["127.0.0.1:5000","registry.internal","[::1]:5000"],"pull_timeout":"2m"}}`), &cfg)).To(Succeed())
			Expect(cfg.Containerd.InsecureRegistries).To(Equal([]string{"127.0.0.1:5000", "registry.internal", "[::1]:5000"}))
			Expect(time.Duration(cfg.Containerd.PullTimeout)).To(Equal(2 * time.Minute))
			Expect(cfg.Containerd.Socket).To(Equal("/run/containerd/containerd.sock"))
			Expect(cfg.Validate()).To(Succeed())
		})

		It("reads durations as Go duration strings", func() {
			cfg := config.DefaultConfig()
			Expect(config.Decode([]byte(`{"stop_grace":"30s","reserved_expiration":"2m","start_timeout":"1h30m",
				"identity":{"validity":"12h"},"network":{"port_quarantine":"500ms"}}`), &cfg)).To(Succeed())
			Expect(time.Duration(cfg.StopGrace)).To(Equal(30 * time.Second))
			Expect(time.Duration(cfg.ReservedExpiration)).To(Equal(2 * time.Minute))
			Expect(time.Duration(cfg.StartTimeout)).To(Equal(90 * time.Minute))
			Expect(time.Duration(cfg.Identity.Validity)).To(Equal(12 * time.Hour))
			Expect(cfg.Network.PortQuarantine).To(Equal(executor.Duration(500 * time.Millisecond)))
		})

		DescribeTable("refuses",
			func(in, message string) {
				cfg := config.DefaultConfig()
				Expect(config.Decode([]byte(in), &cfg)).To(MatchError(ContainSubstring(message)))
			},
			Entry("an unknown top-level key", `{"zone":"z1","zones":["z2"]}`, `zones: unknown key`),
			Entry("an unknown nested key", `{"proxy":{"enabeld":false}}`, `proxy.enabeld: unknown key`),
			Entry("a duration without a unit", `{"stop_grace":"10"}`, "missing unit"),
			Entry("a duration as a number", `{"stop_grace":10}`, "stop_grace"),
			Entry("a second value", `{"zone":"z1"} {"zone":"z2"}`, "more than one JSON value"),
			Entry("trailing garbage", `{"zone":"z1"} x`, "more than one JSON value"),
			Entry("a wrong type", `{"capacity":{"memory_mb":"lots"}}`, "memory_mb"),
			Entry("a misspelt key inside an egress rule", `{"network":{"egress":{"default":[{"protocol":"tcp","destinations":["10.0.0.2"],"port":"53"}]}}}`,
				`network.egress.default: unknown field "port"`),
		)
	})

	Describe("Load", func() {
		It("reads a file over the defaults", func() {
			path := filepath.Join(GinkgoT().TempDir(), "cellagent.json")
			Expect(os.WriteFile(path, []byte(`{"cell_id":"cell-7","log_level":"debug"}`), 0o600)).To(Succeed())
			cfg, err := config.Load(path)
			Expect(err).NotTo(HaveOccurred())
			Expect(cfg.CellID).To(Equal("cell-7"))
			Expect(cfg.LogLevel).To(Equal("debug"))
			Expect(cfg.Zone).To(Equal("z1"))
		})

		DescribeTable("reserves the proxy kind's memory unless the file sets proxy.memory_overhead_mb",
			func(file string, want int) {
				path := filepath.Join(GinkgoT().TempDir(), "cellagent.json")
				Expect(os.WriteFile(path, []byte(file), 0o600)).To(Succeed())
				cfg, err := config.Load(path)
				Expect(err).NotTo(HaveOccurred())
				Expect(cfg.Proxy.MemoryOverheadMB).To(Equal(want))
			},
			Entry("no proxy section: cellproxy's", `{}`, 16),
			Entry("cellproxy", `{"proxy":{"kind":"cellproxy"}}`, 16),
			Entry("envoy: Diego's 32 MB", `{"proxy":{"kind":"envoy","binary":"/opt/envoy"}}`, 32),
			Entry("envoy with its own figure", `{"proxy":{"kind":"envoy","binary":"/opt/envoy","memory_overhead_mb":48}}`, 48),
			Entry("cellproxy with its own figure, 0 included", `{"proxy":{"memory_overhead_mb":0}}`, 0),
		)

		It("names the file when it cannot be decoded", func() {
			path := filepath.Join(GinkgoT().TempDir(), "bad.json")
			Expect(os.WriteFile(path, []byte(`{"cell":"x"}`), 0o600)).To(Succeed())
			_, err := config.Load(path)
			Expect(err).To(MatchError(And(ContainSubstring("config "+path), ContainSubstring(`cell: unknown key`))))
		})

		It("fails for a missing file", func() {
			_, err := config.Load(filepath.Join(GinkgoT().TempDir(), "missing.json"))
			Expect(err).To(MatchError(ContainSubstring("read config")))
			Expect(errors.Is(err, os.ErrNotExist)).To(BeTrue())
		})
	})

	Describe("ParsePortRange", func() {
		DescribeTable("reads LOW-HIGH",
			func(in string, lo, hi uint16) {
				l, h, err := config.ParsePortRange(in)
				Expect(err).NotTo(HaveOccurred())
				Expect(l).To(Equal(lo))
				Expect(h).To(Equal(hi))
			},
			Entry("the default", "40000-59999", uint16(40000), uint16(59999)),
			Entry("one port", "8080-8080", uint16(8080), uint16(8080)),
			Entry("the whole range", "1-65535", uint16(1), uint16(65535)),
		)

		DescribeTable("refuses",
			func(in string) {
				_, _, err := config.ParsePortRange(in)
				Expect(err).To(MatchError(ContainSubstring(`"` + in + `"`)))
			},
			Entry("no dash", "40000"),
			Entry("empty", ""),
			Entry("no high", "40000-"),
			Entry("no low", "-40000"),
			Entry("port 0", "0-10"),
			Entry("low above high", "50000-40000"),
			Entry("above 65535", "1-65536"),
			Entry("negative", "-1-10"),
			Entry("spaces", "1 - 10"),
			Entry("letters", "a-b"),
		)
	})
})

var _ = Describe("proxy.init", func() {
	It("is on for cellproxy unless set, and off for Envoy", func() {
		off, on := false, true
		for _, tc := range []struct {
			kind string
			init *bool
			want bool
		}{{"cellproxy", nil, true}, {"cellproxy", &off, false}, {"cellproxy", &on, true}, {"envoy", nil, false}, {"envoy", &off, false}} {
			Expect(config.Proxy{Kind: tc.kind, Init: tc.init}.InitEnabled()).To(Equal(tc.want), "kind %s init %v", tc.kind, tc.init)
		}
		c := config.DefaultConfig()
		Expect(c.Proxy.Init).To(BeNil())
		Expect(c.Proxy.InitEnabled()).To(BeTrue())
	})
})
