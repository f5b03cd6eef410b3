package config_test

import (
	"os"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/config"
)

var _ = Describe("the packaged example config", func() {
	It("decodes strictly, validates, and equals the defaults but for cell_id", func() {
		b, err := os.ReadFile("../packaging/cellagent.example.json")
		Expect(err).NotTo(HaveOccurred())
		cfg := config.DefaultConfig()
		Expect(config.Decode(b, &cfg)).To(Succeed())
		Expect(cfg.Validate()).To(Succeed())
		def := config.DefaultConfig()
		def.CellID = cfg.CellID
		Expect(cfg).To(Equal(def), "the example documents every default")
	})
})
