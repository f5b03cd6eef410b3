package httpapi

import (
	"net/http"

	"github.com/cellagent/cellagent/executor"
)

// setEgress replaces a running instance's own egress rules; a body that
// does not validate changes nothing.
func (h *handler) setEgress(w http.ResponseWriter, r *http.Request) {
	guid := r.PathValue("guid")
	if err := executor.ValidateGUID(guid); err != nil {
		writeError(w, err)
		return
	}
	if h.cfg.Network == nil {
		writeError(w, executor.NewError(executor.ErrUnavailable, "network filters are not available on this agent"))
		return
	}
	var body struct {
		EgressRules []executor.EgressRule `json:"egress_rules"`
	}
	if err := decode(w, r, &body); err != nil {
		writeError(w, err)
		return
	}
	f, err := h.cfg.Network.SetEgress(r.Context(), guid, body.EgressRules)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, f)
}

// networkFilter shows an instance's filter and its denial counts.
func (h *handler) networkFilter(w http.ResponseWriter, r *http.Request) {
	guid := r.PathValue("guid")
	if err := executor.ValidateGUID(guid); err != nil {
		writeError(w, err)
		return
	}
	if h.cfg.Network == nil {
		writeError(w, executor.NewError(executor.ErrUnavailable, "network filters are not available on this agent"))
		return
	}
	f, err := h.cfg.Network.NetworkFilter(r.Context(), guid)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, f)
}
