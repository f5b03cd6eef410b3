package executor_test

import (
	"errors"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/executor"
)

var _ = DescribeTable("ValidateFilePath",
	func(p string, ok bool) {
		err := executor.ValidateFilePath(p)
		if ok {
			Expect(err).NotTo(HaveOccurred())
			return
		}
		Expect(errors.Is(err, executor.ErrInvalidRequest)).To(BeTrue(), "%q: %v", p, err)
	},
	Entry("an absolute path", "/tmp/result", true),
	Entry("a file at the root", "/result", true),
	Entry("empty", "", false),
	Entry("the root", "/", false),
	Entry("relative", "tmp/result", false),
	Entry("with ..", "/tmp/../etc/shadow", false),
	Entry("with .", "/tmp/./r", false),
	Entry("a doubled slash", "/tmp//r", false),
	Entry("a trailing slash", "/tmp/", false),
	Entry("a NUL", "/tmp/r\x00x", false),
	Entry("too long", "/"+strings.Repeat("a", 1024), false),
)
