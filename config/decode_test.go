package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/config"
)

// problems splits a joined error into its messages.
func problems(err error) []string {
	if err == nil {
		return nil
	}
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) {
		return []string{err.Error()}
	}
	var out []string
	for _, e := range joined.Unwrap() {
		out = append(out, problems(e)...)
	}
	return out
}

var _ = Describe("Decode reports every problem of a file at once", func() {
	DescribeTable("each unknown key and each wrong type, by JSON path",
		func(in string, want []string) {
			cfg := config.DefaultConfig()
			Expect(problems(config.Decode([]byte(in), &cfg))).To(Equal(want))
		},
		Entry("the issue's example: a type error and an unknown key",
			`{"cell_id": 5, "bogus": 1}`,
			[]string{"bogus: unknown key", "cell_id: a number where a string is expected"}),
		Entry("nested and top-level problems together",
			`{"proxy":{"enabeld":true,"memory_overhead_mb":"32"},"network":{"mode":7,"cni_plugin_dirs":"/opt/cni/bin"},"stop_grace":"10","zones":[]}`,
			[]string{
				"network.cni_plugin_dirs: a string where a list is expected",
				"network.mode: a number where a string is expected",
				"proxy.enabeld: unknown key",
				"proxy.memory_overhead_mb: a string where an integer is expected",
				`stop_grace: time: missing unit in duration "10"`,
				"zones: unknown key",
			}),
		Entry("an object where a value is expected, and a value where an object is",
			`{"zone":{"name":"z1"},"listen":"127.0.0.1:1800","capacity":{"memory_mb":1.5}}`,
			[]string{
				"capacity.memory_mb: the number 1.5 where an integer is expected",
				"listen: a string where an object is expected",
				"zone: an object where a string is expected",
			}),
		Entry("a wrong type inside a list and a map",
			`{"nats":{"urls":["nats://a:4222",5]},"preloaded_rootfs":{"busybox":false}}`,
			[]string{
				"nats.urls: a number where a string is expected",
				"preloaded_rootfs: a bool where a string is expected",
			}),
		Entry("nothing wrong", `{"zone":"z2","proxy":{"enabled":false},"Log_Level":"debug"}`, nil),
	)

	It("applies the keys that decode, beside the ones that do not", func() {
		cfg := config.DefaultConfig()
		err := config.Decode([]byte(`{"cell_id":5,"zone":"z9","capacity":{"memory_mb":"x","disk_mb":100}}`), &cfg)
		Expect(problems(err)).To(HaveLen(2))
		Expect(cfg.Zone).To(Equal("z9"))
		Expect(cfg.Capacity.DiskMB).To(Equal(100))
		Expect(cfg.CellID).To(Equal(config.DefaultConfig().CellID), "a key that did not decode keeps its default")
	})

	DescribeTable("a file that is not one JSON object is reported alone, with where it breaks",
		func(in, want string) {
			cfg := config.DefaultConfig()
			err := config.Decode([]byte(in), &cfg)
			Expect(errors.Is(err, config.ErrSyntax)).To(BeTrue())
			Expect(problems(err)).To(HaveLen(1))
			Expect(err).To(MatchError(ContainSubstring(want)))
		},
		Entry("a syntax error", "{\n  \"zone\": \"z1\",\n  \"bogus\" 1\n}", "line 3, column 11: invalid character '1'"),
		Entry("an array", `[1]`, "must hold one JSON object"),
		Entry("two values", `{} {}`, "more than one JSON value"),
		Entry("nothing", ``, "empty file"),
	)

	Describe("LoadAndValidate", func() {
		write := func(content string) string {
			path := filepath.Join(GinkgoT().TempDir(), "cellagent.json")
			Expect(os.WriteFile(path, []byte(content), 0o600)).To(Succeed())
			return path
		}

		It("reports decoding and validation problems together, each decoding one naming the file", func() {
			path := write(`{"cell_id": 5, "bogus": 1, "zone": "", "log_level": "loud"}`)
			_, err := config.LoadAndValidate(path)
			got := problems(err)
			Expect(got).To(ConsistOf(
				"config "+path+": bogus: unknown key",
				"config "+path+": cell_id: a number where a string is expected",
				"zone must not be empty",
				HavePrefix(`log_level "loud"`),
			))
		})

		It("reports a syntax error alone", func() {
			_, err := config.LoadAndValidate(write(`{"zone": ""`))
			Expect(problems(err)).To(HaveLen(1))
			Expect(err).To(MatchError(ContainSubstring("unexpected EOF")))
		})

		It("reports a missing file alone", func() {
			_, err := config.LoadAndValidate(filepath.Join(GinkgoT().TempDir(), "missing.json"))
			Expect(errors.Is(err, os.ErrNotExist)).To(BeTrue())
			Expect(strings.Count(err.Error(), "\n")).To(BeZero())
		})

		It("accepts a good file", func() {
			cfg, err := config.LoadAndValidate(write(`{"zone":"z2"}`))
			Expect(err).NotTo(HaveOccurred())
			Expect(cfg.Zone).To(Equal("z2"))
		})
	})
})

var _ = Describe("Decode applies a key given more than once as encoding/json does", func() {
	DescribeTable("in the file's order: the last value wins, objects merge",
		func(in string, check func(config.Config)) {
			cfg := config.DefaultConfig()
			Expect(config.Decode([]byte(in), &cfg)).To(Succeed())
			check(cfg)
		},
		Entry("the same key twice", `{"zone":"a","zone":"b"}`, func(c config.Config) { Expect(c.Zone).To(Equal("b")) }),
		Entry("the same key in another case, lower case first", `{"zone":"a","Zone":"b"}`, func(c config.Config) { Expect(c.Zone).To(Equal("b")) }),
		Entry("the same key in another case, upper case first", `{"Zone":"a","zone":"b"}`, func(c config.Config) { Expect(c.Zone).To(Equal("b")) }),
		Entry("an object twice", `{"proxy":{"enabled":false},"proxy":{"kind":"envoy"}}`, func(c config.Config) {
			Expect(c.Proxy.Enabled).To(BeFalse())
			Expect(c.Proxy.Kind).To(Equal("envoy"))
		}),
	)
})
