package faults_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/integration/testagent"
)

// goroutines answers the agent's goroutine count from its pprof endpoint.
func goroutines(agent *testagent.Agent) (int, error) {
	resp, err := http.Get(agent.API + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil {
		return 0, err
	}
	n, ok := strings.CutPrefix(strings.TrimSpace(line), "goroutine profile: total ")
	if !ok {
		return 0, fmt.Errorf("unexpected first line %q", line)
	}
	return strconv.Atoi(n)
}

// goroutineProfile is the agent's goroutine dump, for failure messages.
func goroutineProfile(agent *testagent.Agent) string {
	resp, err := http.Get(agent.API + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// apiCall is one kind of request of the mix and the answer it must get.
type apiCall struct {
	name, method, path, body string
	status                   int
	code                     string // error code in the body, for errors
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	return sorted[min(len(sorted)-1, int(float64(len(sorted))*p))]
}

var _ = Describe("1,000 concurrent API requests", func() {
	It("answers each with the intended status, and leaks no goroutine", func() {
		const (
			total    = 1000
			inFlight = 200
		)
		agent := startAgent("fta", nil)
		runRoutable(agent, "api-1", request("api-1.example.com"))
		stateBefore, err := agent.Client.State(ctx)
		Expect(err).NotTo(HaveOccurred())

		mix := func(i int) apiCall {
			switch i % 8 {
			case 0:
				return apiCall{name: "GET state", method: "GET", path: "/v1/state", status: 200}
			case 1:
				return apiCall{name: "GET list", method: "GET", path: "/v1/containers", status: 200}
			case 2:
				return apiCall{name: "GET one", method: "GET", path: "/v1/containers/api-1", status: 200}
			case 3:
				return apiCall{name: "GET unknown", method: "GET", path: fmt.Sprintf("/v1/containers/nope-%d", i), status: 404, code: "ContainerNotFound"}
			case 4:
				return apiCall{name: "PUT broken JSON", method: "PUT", path: fmt.Sprintf("/v1/containers/bad-%d", i), body: `{"image":`, status: 400, code: "InvalidRequest"}
			case 5:
				return apiCall{name: "PUT bad resources", method: "PUT", path: fmt.Sprintf("/v1/containers/bad-%d", i),
					body: `{"image":"preloaded:busybox","resources":{"memory_mb":-1,"disk_mb":64},"process":{"path":"/app/server"}}`, status: 400, code: "InvalidRequest"}
			case 6:
				return apiCall{name: "PUT bad guid", method: "PUT", path: "/v1/containers/-bad%20guid", body: `{}`, status: 400, code: "InvalidRequest"}
			default:
				return apiCall{name: "DELETE unknown", method: "DELETE", path: fmt.Sprintf("/v1/containers/gone-%d", i), status: 404, code: "ContainerNotFound"}
			}
		}

		client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: inFlight}}
		do := func(call apiCall) (int, string, error) {
			req, err := http.NewRequest(call.method, agent.API+call.path, strings.NewReader(call.body))
			if err != nil {
				return 0, "", err
			}
			if call.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			resp, err := client.Do(req)
			if err != nil {
				return 0, "", err
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b), err
		}
		By("warm-up, then the goroutine baseline")
		for i := range 16 {
			_, _, err := do(mix(i))
			Expect(err).NotTo(HaveOccurred())
		}
		client.CloseIdleConnections()
		var baseline int
		Eventually(func() (int, error) { n, err := goroutines(agent); baseline = n; return n, err }, 5*time.Second, 200*time.Millisecond).
			Should(BeNumerically(">", 0))
		time.Sleep(500 * time.Millisecond)
		baseline, err = goroutines(agent)
		Expect(err).NotTo(HaveOccurred())

		By(fmt.Sprintf("%d requests, %d in flight at most", total, inFlight))
		type result struct {
			call    apiCall
			status  int
			body    string
			err     error
			latency time.Duration
		}
		results := make([]result, total)
		sem := make(chan struct{}, inFlight)
		var wg sync.WaitGroup
		began := time.Now()
		for i := range total {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				call := mix(i)
				t := time.Now()
				status, body, err := do(call)
				results[i] = result{call, status, body, err, time.Since(t)}
			}()
		}
		wg.Wait()
		elapsed := time.Since(began)

		var lat []time.Duration
		unexpected := 0
		byName := map[string][]time.Duration{}
		for _, r := range results {
			lat = append(lat, r.latency)
			byName[r.call.name] = append(byName[r.call.name], r.latency)
			ok := r.err == nil && r.status == r.call.status
			if ok && r.call.code != "" {
				var e struct {
					Error struct{ Code string } `json:"error"`
				}
				ok = json.Unmarshal([]byte(r.body), &e) == nil && e.Error.Code == r.call.code
			}
			if !ok {
				unexpected++
				if unexpected <= 10 {
					GinkgoWriter.Printf("%s %s: want %d %s, got %d %v %.200s\n", r.call.method, r.call.path, r.call.status, r.call.code, r.status, r.err, r.body)
				}
			}
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		p50, p99 := percentile(lat, 0.50), percentile(lat, 0.99)
		fmt.Fprintf(GinkgoWriter, "%d requests in %s: p50 %s, p99 %s, max %s\n", total, elapsed.Round(time.Millisecond),
			p50.Round(10*time.Microsecond), p99.Round(10*time.Microsecond), lat[len(lat)-1].Round(10*time.Microsecond))
		names := make([]string, 0, len(byName))
		for n := range byName {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			l := byName[n]
			sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
			fmt.Fprintf(GinkgoWriter, "  %-18s n=%d p50 %s p99 %s\n", n, len(l), percentile(l, 0.5).Round(10*time.Microsecond), percentile(l, 0.99).Round(10*time.Microsecond))
		}
		Expect(unexpected).To(BeZero(), "answers other than the intended status and error code")

		By("no side effects: nothing was reserved or created")
		cs, err := agent.Client.List(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(cs).To(HaveLen(1))
		stateAfter, err := agent.Client.State(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(stateAfter.Available).To(Equal(stateBefore.Available))

		By("no goroutine leak once the client's connections are closed")
		client.CloseIdleConnections()
		var after int
		Eventually(func() (int, error) { n, err := goroutines(agent); after = n; return n, err }, 15*time.Second, 250*time.Millisecond).
			Should(BeNumerically("<=", baseline+2), func() string { return goroutineProfile(agent) })
		GinkgoWriter.Printf("goroutines: %d before, %d after\n", baseline, after)

		expectNothingOrphaned(agent)
		deleteAllAndExpectEmpty(agent)
		tableRow(fmt.Sprintf("%d concurrent API requests (%d in flight; state/list/get, bad PUTs, unknown GET/DELETE)", total, inFlight), 1,
			fmt.Sprintf("nothing: %d unexpected answers, p50 %s p99 %s, goroutines %d -> %d",
				unexpected, p50.Round(10*time.Microsecond), p99.Round(10*time.Microsecond), baseline, after))
	})
})
