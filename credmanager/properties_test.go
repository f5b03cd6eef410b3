package credmanager_test

import (
	"errors"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/credmanager"
)

var _ = Describe("ValidateCertificateProperties", func() {
	DescribeTable("accepts",
		func(ous []string) {
			Expect(credmanager.ValidateCertificateProperties(ous)).To(Succeed())
		},
		Entry("none", nil),
		Entry("Diego's organization/space/app values, ':' included", []string{"organization:o1", "space:s1", "app:a1"}),
		Entry("a guid-valued OU", []string{"app:6f1b8c6e-4b1d-4c5a-9f0e-2b7d3c1a9e55"}),
		Entry("64 bytes", []string{strings.Repeat("x", 64)}),
		Entry("16 values", make16("v")),
		Entry("UTF-8 and punctuation", []string{"équipe:ü", "a@b#c*&"}),
	)

	DescribeTable("rejects, wrapping ErrInvalidCertificateProperties",
		func(ous []string, problem string) {
			err := credmanager.ValidateCertificateProperties(ous)
			Expect(err).To(MatchError(credmanager.ErrInvalidCertificateProperties))
			Expect(err.Error()).To(ContainSubstring(problem))
		},
		Entry("an empty value", []string{"app:a1", ""}, "organizational_unit[1] is empty"),
		Entry("65 bytes", []string{strings.Repeat("x", 65)}, "65 bytes long"),
		Entry("17 values", append(make16("v"), "w"), "17 values"),
		Entry("a newline", []string{"app:a1\nspace:s2"}, "control character U+000A"),
		Entry("a NUL", []string{"a\x00"}, "control character U+0000"),
		Entry("DEL", []string{"a\x7f"}, "control character U+007F"),
		Entry("a C1 control", []string{"a\u0085"}, "control character U+0085"),
		Entry("invalid UTF-8", []string{"a\xff"}, "not valid UTF-8"),
	)

	It("reports every bad value, each wrapping the sentinel", func() {
		err := credmanager.ValidateCertificateProperties([]string{"", "ok", "a\tb"})
		Expect(err.Error()).To(ContainSubstring("organizational_unit[0]"))
		Expect(err.Error()).To(ContainSubstring("organizational_unit[2]"))
		var joined interface{ Unwrap() []error }
		Expect(errors.As(err, &joined)).To(BeTrue())
		for _, e := range joined.Unwrap() {
			Expect(e).To(MatchError(credmanager.ErrInvalidCertificateProperties))
		}
	})

	It("is checked by Issue before anything is written", func() {
		e := newEnv()
		m := e.manager()
		id := identity("guid-1")
		id.OrganizationalUnits = []string{"bad\n"}
		_, err := m.Issue(e.logger, id)
		Expect(err).To(MatchError(credmanager.ErrInvalidCertificateProperties))
		dir, _ := m.HostDir("guid-1")
		Expect(dir).NotTo(BeADirectory())
	})

	It("rejects negative uids", func() {
		id := identity("guid-1")
		id.UID = -1
		Expect(id.Validate()).To(MatchError(ContainSubstring("must not be negative")))
	})
})

func make16(prefix string) []string {
	out := make([]string, 16)
	for i := range out {
		out[i] = prefix + strings.Repeat("x", i)
	}
	return out
}
