package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/executor/httpapi"
	"github.com/cellagent/cellagent/fakes"
)

// stubImporter records what POST /v1/images handed it.
type stubImporter struct {
	body, name string
	calls      int
	answer     []executor.Image
	err        error
}

func (s *stubImporter) ImportImage(_ context.Context, archive io.Reader, name string) ([]executor.Image, error) {
	s.calls++
	b, err := io.ReadAll(archive)
	if err != nil {
		return nil, err
	}
	s.body, s.name = string(b), name
	return s.answer, s.err
}

var _ = Describe("POST /v1/images", func() {
	var importer *stubImporter

	serve := func(cfg httpapi.Config, target, body string) *httptest.ResponseRecorder {
		cfg.Client = &fakes.FakeClient{}
		w := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, target, strings.NewReader(body))
		req.Header.Set("Content-Type", httpapi.ImageContentType)
		httpapi.New(lagertest.NewTestLogger("httpapi"), cfg).ServeHTTP(w, req)
		return w
	}
	errorOf := func(w *httptest.ResponseRecorder) (code, msg string) {
		var b struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		Expect(json.Unmarshal(w.Body.Bytes(), &b)).To(Succeed(), w.Body.String())
		return b.Error.Code, b.Error.Message
	}

	BeforeEach(func() {
		importer = &stubImporter{answer: []executor.Image{{Name: "registry.example.com/app:1.0", Digest: "sha256:abc"}}}
	})

	It("streams the body to the importer with the name and answers the images", func() {
		w := serve(httpapi.Config{Images: importer}, "/v1/images?name=registry.example.com/app:1.0", "tar bytes")
		Expect(w.Code).To(Equal(http.StatusOK), w.Body.String())
		Expect(importer.body).To(Equal("tar bytes"))
		Expect(importer.name).To(Equal("registry.example.com/app:1.0"))
		Expect(w.Body.String()).To(MatchJSON(`{"images":[{"name":"registry.example.com/app:1.0","digest":"sha256:abc"}]}`))
	})

	DescribeTable("refuses a bad name before reading anything",
		func(name string) {
			w := serve(httpapi.Config{Images: importer}, "/v1/images?name="+name, "tar bytes")
			Expect(w.Code).To(Equal(http.StatusBadRequest))
			code, msg := errorOf(w)
			Expect(code).To(Equal("InvalidRequest"))
			Expect(msg).To(ContainSubstring("image name"))
			Expect(importer.calls).To(BeZero())
		},
		Entry("capitals in the path", "Registry/App:1"),
		Entry("dot-dot", "a..b/app:1"),
		Entry("a space", "app%201"),
		Entry("a digest", "app@sha256:abc"),
	)

	It("passes on the importer's InvalidRequest", func() {
		importer.err = executor.NewError(executor.ErrInvalidRequest, "not a usable image archive: no index.json")
		w := serve(httpapi.Config{Images: importer}, "/v1/images", "garbage")
		Expect(w.Code).To(Equal(http.StatusBadRequest))
		_, msg := errorOf(w)
		Expect(msg).To(ContainSubstring("no index.json"))
	})

	It("answers 500 for any other failure", func() {
		importer.err = errors.New("containerd: unavailable")
		Expect(serve(httpapi.Config{Images: importer}, "/v1/images", "tar").Code).To(Equal(http.StatusInternalServerError))
	})

	It("answers 503 Unavailable without an importer", func() {
		w := serve(httpapi.Config{}, "/v1/images", "tar")
		Expect(w.Code).To(Equal(http.StatusServiceUnavailable))
		code, _ := errorOf(w)
		Expect(code).To(Equal("Unavailable"))
	})
})
