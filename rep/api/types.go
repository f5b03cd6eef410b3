package api

import (
	"encoding/json"
	"fmt"

	"github.com/cellagent/cellagent/rep/models"
)

// CellPresence is the value of the cell's Locket presence (bbs
// models.CellPresence in its JSON form).
type CellPresence struct {
	CellID                string     `json:"cell_id"`
	RepAddress            string     `json:"rep_address"`
	Zone                  string     `json:"zone"`
	Capacity              Capacity   `json:"capacity"`
	RootFSProviders       []Provider `json:"rootfs_provider_list,omitempty"`
	PlacementTags         []string   `json:"placement_tags"`
	OptionalPlacementTags []string   `json:"optional_placement_tags"`
	RepURL                string     `json:"rep_url"`
}

// Capacity is the cell's total capacity in a presence.
type Capacity struct {
	MemoryMB   int `json:"memory_mb"`
	DiskMB     int `json:"disk_mb"`
	Containers int `json:"containers"`
}

// Provider is a rootfs scheme a cell serves, with its properties (the
// stacks, for preloaded).
type Provider struct {
	Name       string   `json:"name"`
	Properties []string `json:"properties,omitempty"`
}

// Resources are cell-wide amounts in a CellState (rep.Resources; no JSON
// tags there, so the field names are the keys).
type Resources struct {
	MemoryMB   int32
	DiskMB     int32
	Containers int
}

// Resource is what one LRP or task needs (rep.Resource).
type Resource struct {
	MemoryMB int32
	DiskMB   int32
	MaxPids  int32
}

// PlacementConstraint is rep.PlacementConstraint.
type PlacementConstraint struct {
	PlacementTags []string
	VolumeDrivers []string
	RootFs        string
}

// LRP is one instance in /state and /work (rep.LRP: the actual LRP key
// fields are inlined with their BBS JSON names).
type LRP struct {
	InstanceGUID string `json:"instance_guid"`
	ProcessGUID  string `json:"process_guid"`
	Index        int32  `json:"index"`
	Domain       string `json:"domain"`
	PlacementConstraint
	Resource
	State string `json:"state"`
}

// Task is rep.Task.
type Task struct {
	TaskGuid string
	Domain   string
	PlacementConstraint
	Resource
	State  TaskState `json:"state"`
	Failed bool      `json:"failed"`
}

// TaskState is BBS's Task_State, which travels in JSON by name
// ("Pending"), as bbs/models/task.go marshals it.
type TaskState models.Task_State

func (s TaskState) MarshalJSON() ([]byte, error) { return json.Marshal(models.Task_State(s).String()) }

func (s *TaskState) UnmarshalJSON(b []byte) error {
	var name string
	if err := json.Unmarshal(b, &name); err != nil {
		return err
	}
	v, ok := models.Task_State_value[name]
	if !ok {
		return fmt.Errorf("unknown task state %q", name)
	}
	*s = TaskState(v)
	return nil
}

// Work is the body of POST /work and its answer (the items that failed).
type Work struct {
	LRPs   []LRP
	Tasks  []Task
	CellID string `json:"cell_id,omitempty"`
}

// CellState is the answer of GET /state (rep.CellState).
type CellState struct {
	RepURL                  string          `json:"rep_url"`
	CellID                  string          `json:"cell_id"`
	CellIndex               int             `json:"cell_index"`
	RootFSProviders         RootFSProviders // scheme -> provider
	AvailableResources      Resources
	TotalResources          Resources
	LRPs                    []LRP
	Tasks                   []Task
	StartingContainerCount  int
	Zone                    string
	Evacuating              bool
	VolumeDrivers           []string
	PlacementTags           []string
	OptionalPlacementTags   []string
	ProxyMemoryAllocationMB int
}

// RootFSProviders maps a rootfs scheme to the stacks served under it; a
// nil set means any rootfs of the scheme (rep's "arbitrary" provider).
type RootFSProviders map[string][]string

// MarshalJSON writes rep's form: {"preloaded":{"type":"fixed_set",
// "set":{"cflinuxfs4":{}}}} or {"docker":{"type":"arbitrary"}}.
func (p RootFSProviders) MarshalJSON() ([]byte, error) {
	type provider struct {
		Type string              `json:"type"`
		Set  map[string]struct{} `json:"set,omitempty"`
	}
	out := map[string]provider{}
	for scheme, set := range p {
		if set == nil {
			out[scheme] = provider{Type: "arbitrary"}
			continue
		}
		fixed := map[string]struct{}{}
		for _, s := range set {
			fixed[s] = struct{}{}
		}
		out[scheme] = provider{Type: "fixed_set", Set: fixed}
	}
	return json.Marshal(out)
}

// LRPUpdate is the body of PUT /v2/lrps/{process_guid}/instances/{instance_guid}
// (rep.LRPUpdate: BBS sends it when a desired LRP's internal routes or
// metric tags change; metric tags come resolved for the instance).
type LRPUpdate struct {
	InstanceGUID   string            `json:"instance_guid"`
	ProcessGUID    string            `json:"process_guid"`
	Index          int32             `json:"index"`
	Domain         string            `json:"domain"`
	InternalRoutes []InternalRoute   `json:"internal_routes"`
	MetricTags     map[string]string `json:"metric_tags"`
}

// InternalRoute is one of routing-info's internalroutes.InternalRoutes.
type InternalRoute struct {
	Hostname string `json:"hostname"`
}
