package config_test

import (
	"os"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/config"
)

var _ = Describe("diego section", func() {
	var (
		dir string
		cfg config.Config
	)

	BeforeEach(func() {
		dir = GinkgoT().TempDir()
		file := func(name string) string {
			p := filepath.Join(dir, name)
			Expect(os.WriteFile(p, []byte("pem"), 0o600)).To(Succeed())
			return p
		}
		cfg = config.DefaultConfig()
		cfg.Diego = &config.Diego{
			BBS:    config.DiegoBBS{URL: "https://bbs.service.cf.internal:8889", CACert: file("ca.crt"), Cert: file("cell.crt"), Key: file("cell.key")},
			Locket: config.DiegoLocket{Address: "locket.service.cf.internal:8891", CACert: file("ca.crt"), Cert: file("cell.crt"), Key: file("cell.key")},
			Rep:    config.DiegoRep{Listen: "0.0.0.0:1800", URL: "http://10.0.0.5:1800"},
			Stacks: map[string]string{"cflinuxfs4": "busybox"},
		}
	})

	It("is absent by default: the agent is not a Diego cell", func() {
		Expect(config.DefaultConfig().Diego).To(BeNil())
	})

	It("accepts a complete section, decoded strictly, with routes emitted by default", func() {
		Expect(cfg.Validate()).To(Succeed())
		Expect(cfg.Diego.RoutesEmitted()).To(BeTrue())
		var decoded config.Config
		Expect(config.Decode([]byte(`{"diego":{"emit_routes":false,"stacks":{"s":"busybox"}}}`), &decoded)).To(Succeed())
		Expect(decoded.Diego.RoutesEmitted()).To(BeFalse())
		Expect(config.Decode([]byte(`{"diego":{"bogus":1}}`), &decoded)).To(MatchError(ContainSubstring("diego.bogus: unknown key")))
	})

	It("reports every problem at once", func() {
		cfg.Diego.BBS.URL = "http://bbs:8889"
		cfg.Diego.BBS.Key = filepath.Join(dir, "missing.key")
		cfg.Diego.Locket.Address = "locket"
		cfg.Diego.Rep.Listen = "1800"
		cfg.Diego.Rep.URL = "https://10.0.0.5:1800"
		cfg.Diego.Stacks = map[string]string{"cflinuxfs4": "nope"}
		err := cfg.Validate()
		Expect(err).To(MatchError(ContainSubstring("diego.bbs.url")))
		Expect(err).To(MatchError(ContainSubstring("diego.bbs.key")))
		Expect(err).To(MatchError(ContainSubstring("diego.locket.address")))
		Expect(err).To(MatchError(ContainSubstring("diego.rep.listen")))
		Expect(err).To(MatchError(ContainSubstring(`diego.rep.url "https://10.0.0.5:1800": must be an http URL`)))
		Expect(err).To(MatchError(ContainSubstring(`diego.stacks.cflinuxfs4: "nope" is not a preloaded_rootfs name`)))
	})

	It("wants an https rep url and all three files with rep tls", func() {
		cfg.Diego.Rep.TLS = config.TLS{Cert: filepath.Join(dir, "cell.crt")}
		err := cfg.Validate()
		Expect(err).To(MatchError(ContainSubstring("diego.rep.tls.key is required")))
		Expect(err).To(MatchError(ContainSubstring("diego.rep.tls.client_ca is required")))
		Expect(err).To(MatchError(ContainSubstring("must be an https URL")))
	})

	It("needs at least one stack", func() {
		cfg.Diego.Stacks = nil
		Expect(cfg.Validate()).To(MatchError(ContainSubstring("diego.stacks must name at least one stack")))
	})
})
