package proxyconfig_test

import (
	"flag"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

func TestProxyconfig(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Proxyconfig Suite")
}
