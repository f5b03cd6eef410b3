package main

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

func TestCellctl(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "cellctl Suite")
}
