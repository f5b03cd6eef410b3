package main

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

func TestCellagent(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "cellagent command Suite")
}
