package cell_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

func TestCell(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Diego cell")
}
