package diego_test

import (
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/integration/testagent"
)

var _ = Describe("evacuating a cellagent Diego cell", Ordered, func() {
	var (
		k          *kit
		evac, stay *testagent.Agent
		natsURL    string
	)

	BeforeAll(func() {
		cluster, err := testagent.StartNATSCluster(1)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(cluster.Shutdown)
		natsURL = cluster.URLs()[0]
		opts := cellOptions{natsURLs: []string{natsURL}}
		k, evac = startCell("diegoevac1", opts, cellNetwork{name: "cellagentevac", bridge: "caevac0",
			subnet: "10.254.173.0/24", ports: "47400-47499"})
		stay = startAgent(k, "diegoevac2", opts, cellNetwork{name: "cellagentevactwo", bridge: "caevactwo0",
			subnet: "10.254.174.0/24", ports: "47500-47599"})
		Eventually(k.cells, waitLong, time.Second).Should(HaveLen(2))
	})

	It("moves its LRPs to the other cell through BBS, registering each replacement's route before withdrawing the old one, and leaves the presence last", func() {
		const guid = "it-evac"
		uri := guid + ".example.com"
		rec := recordRoutes(natsURL)
		_, err := k.bbsctl(desiredLRP(guid, 2), "desire-lrp")
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { _, _ = k.bbsctl("", "remove-lrp", guid) })
		lrps, err := k.waitActual(guid, "RUNNING", 2, waitLong)
		Expect(err).NotTo(HaveOccurred())
		Expect(lrps).To(ConsistOf(HaveField("CellID", "diegoevac1"), HaveField("CellID", "diegoevac2")))
		var old actualLRP
		for _, l := range lrps {
			if l.CellID == "diegoevac1" {
				old = l
			}
		}
		Eventually(func() int { return rec.first("router.register", old.InstanceGUID, uri) }, 30*time.Second,
			200*time.Millisecond).Should(BeNumerically(">=", 0))

		out, err := exec.Command(filepath.Join(binDir(), "cellctl"), "-api", evac.API, "evacuate").CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(out))

		// Both instances end up on the other cell; the moved one is a new
		// instance with the old one's index.
		var moved actualLRP
		Eventually(func(g Gomega) {
			now, err := k.actualLRPs(guid)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(now).To(HaveLen(2))
			for _, l := range now {
				g.Expect(l.State).To(Equal("RUNNING"))
				g.Expect(l.CellID).To(Equal("diegoevac2"))
				g.Expect(l.Presence).NotTo(Equal("EVACUATING"))
				if l.Index == old.Index {
					moved = l
				}
			}
		}, waitLong, time.Second).Should(Succeed())
		Expect(moved.InstanceGUID).NotTo(Equal(old.InstanceGUID))

		// No unroutable gap: the replacement was registered before the
		// evacuated instance's route was withdrawn (one NATS, one order).
		Eventually(func() int { return rec.first("router.unregister", old.InstanceGUID, uri) }, waitLong,
			200*time.Millisecond).Should(BeNumerically(">=", 0))
		registered := rec.first("router.register", moved.InstanceGUID, uri)
		Expect(registered).To(BeNumerically(">=", 0))
		Expect(registered).To(BeNumerically("<", rec.first("router.unregister", old.InstanceGUID, uri)))
		body, err := get(appURL(moved) + "/")
		Expect(err).NotTo(HaveOccurred())
		Expect(body).To(ContainSubstring("hello from " + moved.InstanceGUID))

		// Empty, the evacuated agent exits, and only then gives up its
		// presence.
		Eventually(evac.Exited(), waitLong).Should(BeClosed())
		Eventually(k.cells, 30*time.Second, 500*time.Millisecond).Should(ConsistOf(HaveField("CellID", "diegoevac2")))
		log := evac.LogText()
		evacuated, released := strings.LastIndex(log, "evacuate.evacuated"), strings.Index(log, "released-presence")
		Expect(evacuated).To(BeNumerically(">=", 0))
		Expect(released).To(BeNumerically(">", evacuated), "the presence is released after the last instance left")
		Expect(diegoContainers(stay, guid)).To(HaveLen(2))
	})
})

// binDir is where the built binaries are (CELLAGENT_BIN_DIR).
func binDir() string {
	d, err := testagent.BinDir()
	Expect(err).NotTo(HaveOccurred())
	return d
}
