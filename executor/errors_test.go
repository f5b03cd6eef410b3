package executor_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/executor"
)

var _ = Describe("API errors", func() {
	DescribeTable("ErrorFor finds the code and status a wrapped sentinel carries and keeps the chain's text",
		func(sentinel *executor.Error, code string, status int) {
			err := fmt.Errorf("create task g1: %w", sentinel)
			e := executor.ErrorFor(err)
			Expect(e.Code).To(Equal(code))
			Expect(e.Status).To(Equal(status))
			Expect(e.Message).To(Equal("create task g1: " + sentinel.Message))
		},
		Entry("InvalidRequest", executor.ErrInvalidRequest, "InvalidRequest", http.StatusBadRequest),
		Entry("ContainerNotFound", executor.ErrContainerNotFound, "ContainerNotFound", http.StatusNotFound),
		Entry("ContainerExists", executor.ErrContainerExists, "ContainerExists", http.StatusConflict),
		Entry("InvalidTransition", executor.ErrInvalidTransition, "InvalidTransition", http.StatusConflict),
		Entry("InsufficientResources", executor.ErrInsufficientResources, "InsufficientResources", http.StatusConflict),
		Entry("Evacuating", executor.ErrEvacuating, "Evacuating", http.StatusConflict),
		Entry("RequestTooLarge", executor.ErrRequestTooLarge, "RequestTooLarge", http.StatusRequestEntityTooLarge),
		Entry("Unavailable", executor.ErrUnavailable, "Unavailable", http.StatusServiceUnavailable),
		Entry("InternalError", executor.ErrInternal, "InternalError", http.StatusInternalServerError),
	)

	It("maps an error without a code to InternalError with its own message", func() {
		e := executor.ErrorFor(errors.New("disk on fire"))
		Expect(e.Code).To(Equal(executor.CodeInternal))
		Expect(e.Status).To(Equal(http.StatusInternalServerError))
		Expect(e.Message).To(Equal("disk on fire"))
	})

	It("finds a code through errors.Join", func() {
		err := errors.Join(errors.New("first"), fmt.Errorf("second: %w", executor.ErrContainerNotFound))
		Expect(executor.ErrorFor(err).Code).To(Equal(executor.CodeContainerNotFound))
	})

	Describe("NewError", func() {
		It("has the sentinel's code and status and its own message", func() {
			err := executor.NewError(executor.ErrInvalidRequest, "memory_mb must be positive, got %d", -3)
			Expect(err.Error()).To(Equal("memory_mb must be positive, got -3"))
			Expect(errors.Is(err, executor.ErrInvalidRequest)).To(BeTrue())
			Expect(errors.Is(err, executor.ErrContainerNotFound)).To(BeFalse())
			var e *executor.Error
			Expect(errors.As(err, &e)).To(BeTrue())
			Expect(e.Status).To(Equal(http.StatusBadRequest))
		})

		It("stays matchable when wrapped again", func() {
			err := fmt.Errorf("run g1: %w", executor.NewError(executor.ErrInsufficientResources, "memory"))
			Expect(errors.Is(err, executor.ErrInsufficientResources)).To(BeTrue())
			Expect(executor.ErrorFor(err).Message).To(Equal("run g1: memory"))
		})
	})

	Describe("errors.Is", func() {
		It("matches by code, not by identity", func() {
			decoded := &executor.Error{Code: executor.CodeContainerExists, Message: "something else entirely"}
			Expect(errors.Is(decoded, executor.ErrContainerExists)).To(BeTrue())
			Expect(errors.Is(decoded, executor.ErrContainerNotFound)).To(BeFalse())
		})

		It("does not match a non-API error", func() {
			Expect(errors.Is(errors.New("container not found"), executor.ErrContainerNotFound)).To(BeFalse())
		})
	})

	Describe("ErrorFromCode", func() {
		It("rebuilds a known code with the sentinel's status, whatever status came over the wire", func() {
			err := executor.ErrorFromCode(executor.CodeContainerNotFound, "container g1 not found", http.StatusTeapot)
			Expect(errors.Is(err, executor.ErrContainerNotFound)).To(BeTrue())
			Expect(err.Error()).To(Equal("container g1 not found"))
			var e *executor.Error
			Expect(errors.As(err, &e)).To(BeTrue())
			Expect(e.Status).To(Equal(http.StatusNotFound))
		})

		It("keeps an unknown code and the status it came with", func() {
			err := executor.ErrorFromCode("Teapot", "short and stout", http.StatusTeapot)
			var e *executor.Error
			Expect(errors.As(err, &e)).To(BeTrue())
			Expect(e).To(Equal(&executor.Error{Code: "Teapot", Status: http.StatusTeapot, Message: "short and stout"}))
			Expect(executor.ErrorFor(err).Code).To(Equal(executor.CodeInternal))
		})
	})

	It("encodes as code and message only", func() {
		b, err := json.Marshal(executor.NewError(executor.ErrEvacuating, "cell c1 is evacuating"))
		Expect(err).NotTo(HaveOccurred())
		Expect(b).To(MatchJSON(`{"code":"Evacuating","message":"cell c1 is evacuating"}`))
	})
})
