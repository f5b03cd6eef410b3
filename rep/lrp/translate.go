// Package lrp translates a BBS desired LRP into cellagent's run request.
// It is a pure function of the desired LRP and the cell's settings: it
// either answers a complete run request or refuses with the reason, and
// never drops a setting it cannot honour (a desired LRP run half-configured
// is worse than one refused at placement).
//
// Supported now: rootfs preloaded:STACK (via the stacks map) and docker
// images (see Image; image_username and image_password become the run
// request's ImageAuth; a docker image's run action runs as root unless it
// names a user, refused unless privileged where allowed), the action
// tree run / serial / codependent holding exactly one run action, a setup
// of download actions in serial / parallel / try / timeout /
// emit_progress (see Setup; a task's serial may hold such downloads before
// its run), cached_dependencies, env, ports, memory, disk, max pids, CPU
// weight, start timeout, a single tcp or http check_definition check,
// certificate properties, cf-router routes, log guid, metric tags, egress
// rules (see EgressRules), and privileged on a cell that allows it.
// Refused: everything else (see Refusal), among it upload actions, run
// actions in setup and monitor actions without check_definition.
package lrp

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/rep/models"
)

// Tags the cell sets on a Diego container; they let the cell find the
// actual LRP of a container after a restart.
const (
	TagProcessGUID  = "diego.process-guid"
	TagIndex        = "diego.index"
	TagDomain       = "diego.domain"
	TagInstanceGUID = "diego.instance-guid"
	// TagTaskGUID marks a task's container (its guid is the task guid).
	TagTaskGUID = "diego.task-guid"
	// TagResultFile is the path of a task's result file in its container
	// (read when the task ends, as the rep's result-file tag).
	TagResultFile = "diego.result-file"
)

// Settings are the cell's part of the translation.
type Settings struct {
	// Stacks maps a stack name of preloaded:STACK to a preloaded rootfs name.
	Stacks map[string]string
	// EmitRoutes registers routes["cf-router"] from the cell.
	EmitRoutes bool
	// AllowPrivileged is the agent's allow_privileged: without it a
	// privileged desired LRP or task is refused here, at placement.
	AllowPrivileged bool
}

// Refusal is why a desired LRP cannot run on this cell.
type Refusal struct{ Reason string }

func (r *Refusal) Error() string { return "unsupported desired lrp: " + r.Reason }

func refuse(format string, args ...any) *Refusal {
	return &Refusal{Reason: fmt.Sprintf(format, args...)}
}

// Names of the BBS fields this cell does not implement yet, by message and
// field number; they are the unknown fields of our messages (but for the
// image login, read from them: see handledUnknown).
var unsupportedFields = map[protoreflect.FullName]map[protowire.Number]string{
	"models.DesiredLRP": {25: "volume_mounts", 26: "network",
		34: "image_layers", 36: "sidecars", 37: "log_rate_limit",
		38: "volume_mounted_files"},
	"models.Action":    {2: "upload action"},
	"models.RunAction": {9: "volume_mounted_files"},
	"models.TaskDefinition": {18: "volume_mounts", 19: "network",
		25: "image_layers", 26: "log_rate_limit"},
}

// unknownFields lists the fields set in m (and the messages in it) that
// our wire types do not declare.
func unknownFields(m protoreflect.Message, path string, out *[]string) {
	raw := m.GetUnknown()
	for len(raw) > 0 {
		num, typ, n := protowire.ConsumeTag(raw)
		if n < 0 {
			*out = append(*out, path+": undecodable field")
			return
		}
		raw = raw[n:]
		skip := protowire.ConsumeFieldValue(num, typ, raw)
		if skip < 0 {
			*out = append(*out, path+": undecodable field")
			return
		}
		raw = raw[skip:]
		if handledUnknown(m, num) {
			continue
		}
		name := unsupportedFields[m.Descriptor().FullName()][num]
		if name == "" {
			name = fmt.Sprintf("field %d", num)
		}
		*out = append(*out, path+name)
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Message() == nil || fd.IsMap() {
			return true
		}
		if fd.IsList() {
			for i := 0; i < v.List().Len(); i++ {
				unknownFields(v.List().Get(i).Message(), fmt.Sprintf("%s%s[%d].", path, fd.Name(), i), out)
			}
			return true
		}
		unknownFields(v.Message(), path+string(fd.Name())+".", out)
		return true
	})
}

// Translate answers the run request for instance index of d.
func Translate(d *models.DesiredLRP, index int32, s Settings) (executor.RunRequest, error) {
	if d.GetMonitor() != nil && d.GetCheckDefinition() == nil {
		return executor.RunRequest{}, refuse("monitor actions are not supported; use check_definition")
	}
	req, err := translateCommon(d, common{rootfs: d.GetRootFs(), privileged: d.GetPrivileged(),
		trustedCerts: d.GetTrustedSystemCertificatesPath(), action: d.GetAction(), env: d.GetEnvironmentVariables(),
		memoryMB: d.GetMemoryMb(), diskMB: d.GetDiskMb(), maxPids: d.GetMaxPids(), cpuWeight: d.GetCpuWeight(),
		logGUID: d.GetLogGuid(), certs: d.GetCertificateProperties(), egress: d.GetEgressRules()}, s)
	if err != nil {
		return executor.RunRequest{}, err
	}
	req.Index = int(index)
	if req.Setup, err = Setup(d.GetSetup()); err != nil {
		return executor.RunRequest{}, err
	}
	req.CachedDependencies = CachedDependencies(d.GetCachedDependencies())
	for _, p := range d.GetPorts() {
		if p == 0 || p > 65535 {
			return executor.RunRequest{}, refuse("port %d is out of range", p)
		}
		req.Ports = append(req.Ports, uint16(p))
	}
	switch {
	case d.GetStartTimeoutMs() > 0:
		req.StartTimeout = executor.Duration(time.Duration(d.GetStartTimeoutMs()) * time.Millisecond)
	case d.GetDeprecatedStartTimeoutS() > 0:
		req.StartTimeout = executor.Duration(time.Duration(d.GetDeprecatedStartTimeoutS()) * time.Second)
	}
	if req.Check, err = check(d.GetCheckDefinition()); err != nil {
		return executor.RunRequest{}, err
	}
	if s.EmitRoutes {
		if req.Routes, err = Routes(d.GetRoutes()); err != nil {
			return executor.RunRequest{}, err
		}
	}
	return req, nil
}

// TranslateTask answers the run request of a task. A task's container
// has no ports and no check: it runs until its process exits. Its
// result_file (an absolute, clean path) is the caller's to read.
func TranslateTask(t *models.TaskDefinition, s Settings) (executor.RunRequest, error) {
	if f := t.GetResultFile(); f != "" {
		if err := executor.ValidateFilePath(f); err != nil {
			return executor.RunRequest{}, refuse("result_file: %v", err)
		}
	}
	setup, action, err := taskActions(t.GetAction())
	if err != nil {
		return executor.RunRequest{}, err
	}
	req, err := translateCommon(t, common{rootfs: t.GetRootFs(), privileged: t.GetPrivileged(),
		trustedCerts: t.GetTrustedSystemCertificatesPath(), action: action, env: t.GetEnvironmentVariables(),
		memoryMB: t.GetMemoryMb(), diskMB: t.GetDiskMb(), maxPids: t.GetMaxPids(), cpuWeight: t.GetCpuWeight(),
		logGUID: t.GetLogGuid(), certs: t.GetCertificateProperties(), egress: t.GetEgressRules()}, s)
	if err != nil {
		return executor.RunRequest{}, err
	}
	req.Setup, req.CachedDependencies = setup, CachedDependencies(t.GetCachedDependencies())
	return req, nil
}

// common are the fields desired LRPs and tasks share.
type common struct {
	rootfs, trustedCerts, logGUID string
	privileged                    bool
	action                        *models.Action
	env                           []*models.EnvironmentVariable
	memoryMB, diskMB, maxPids     int32
	cpuWeight                     uint32
	certs                         *models.CertificateProperties
	egress                        []*models.SecurityGroupRule
}

// translateCommon refuses what neither kind supports and fills what both
// have; msg is the whole message, searched for undeclared fields.
func translateCommon(msg proto.Message, c common, s Settings) (executor.RunRequest, error) {
	var unknown []string
	unknownFields(msg.ProtoReflect(), "", &unknown)
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return executor.RunRequest{}, refuse("not supported by this cell: %s", strings.Join(dedupe(unknown), ", "))
	}
	if c.privileged && !s.AllowPrivileged {
		return executor.RunRequest{}, refuse("privileged: this cell's allow_privileged is false")
	}
	if c.trustedCerts != "" {
		return executor.RunRequest{}, refuse("trusted_system_certificates_path %q is not supported", c.trustedCerts)
	}
	image, err := Image(c.rootfs, s.Stacks)
	if err != nil {
		return executor.RunRequest{}, err
	}
	auth, err := imageAuth(msg, image)
	if err != nil {
		return executor.RunRequest{}, err
	}
	run, err := singleRun(c.action)
	if err != nil {
		return executor.RunRequest{}, err
	}
	if rl := run.GetResourceLimits(); rl != nil && (rl.OptionalNofile != nil || rl.OptionalNproc != nil) {
		return executor.RunRequest{}, refuse("run action resource_limits (nofile, nproc) are not supported")
	}
	req := executor.RunRequest{
		LogGUID:    c.logGUID,
		Resources:  &executor.Resources{MemoryMB: int(c.memoryMB), DiskMB: int(c.diskMB), MaxPids: int(c.maxPids)},
		Image:      image,
		Process:    executor.Process{Path: run.GetPath(), Args: run.GetArgs(), Dir: run.GetDir(), User: run.GetUser()},
		CPUWeight:  int(c.cpuWeight),
		Privileged: c.privileged,
		ImageAuth:  auth,
	}
	if strings.HasPrefix(image, executor.DockerImagePrefix) {
		if req.Process.User, err = dockerUser(req.Process.User, c.privileged, s); err != nil {
			return executor.RunRequest{}, err
		}
	}
	if req.EgressRules, err = EgressRules(c.egress); err != nil {
		return executor.RunRequest{}, err
	}
	for _, e := range slices.Concat(c.env, run.GetEnv()) {
		req.Process.Env = append(req.Process.Env, e.GetName()+"="+e.GetValue())
	}
	if len(c.certs.GetOrganizationalUnit()) > 0 {
		req.CertificateProperties = &executor.CertificateProperties{OrganizationalUnit: c.certs.GetOrganizationalUnit()}
	}
	return req, nil
}

func dedupe(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// singleRun finds the one run action of the tree: run, or serial or
// codependent around exactly one run (what a single-process app sends).
func singleRun(a *models.Action) (*models.RunAction, error) {
	switch {
	case a == nil:
		return nil, refuse("no action")
	case kinds(a) != 1:
		return nil, refuse("an action must have exactly one kind")
	case a.GetRunAction() != nil:
		return a.GetRunAction(), nil
	case a.GetSerialAction() == nil && a.GetCodependentAction() == nil:
		return nil, refuse("download, timeout, try, parallel and emit_progress actions are supported in setup only (or before a task's run)")
	}
	var inner []*models.Action
	kind := "serial"
	if a.GetSerialAction() != nil {
		inner = a.GetSerialAction().GetActions()
	} else if a.GetCodependentAction() != nil {
		inner, kind = a.GetCodependentAction().GetActions(), "codependent"
	}
	if len(inner) != 1 {
		return nil, refuse("%s action with %d actions: only one run action per instance is supported", kind, len(inner))
	}
	return singleRun(inner[0])
}

func check(cd *models.CheckDefinition) (*executor.Check, error) {
	if cd == nil {
		return nil, nil
	}
	checks := cd.GetChecks()
	if len(cd.GetReadinessChecks()) > 0 {
		return nil, refuse("readiness_checks are not supported")
	}
	if len(checks) > 1 {
		return nil, refuse("check_definition with %d checks: only one is supported", len(checks))
	}
	if len(checks) == 0 {
		return nil, nil
	}
	c := checks[0]
	switch {
	case c.GetTcpCheck() != nil && c.GetHttpCheck() == nil:
		return &executor.Check{TCP: &executor.TCPCheck{Port: uint16(c.GetTcpCheck().GetPort())}}, nil
	case c.GetHttpCheck() != nil && c.GetTcpCheck() == nil:
		h := c.GetHttpCheck()
		return &executor.Check{HTTP: &executor.HTTPCheck{Port: uint16(h.GetPort()), Path: h.GetPath()}}, nil
	}
	return nil, refuse("a check must have exactly one of tcp_check or http_check")
}

// cfRoute is one entry of routes["cf-router"] (routing-info's
// cfroutes.CFRoute).
type cfRoute struct {
	Hostnames       []string `json:"hostnames"`
	Port            uint32   `json:"port"`
	RouteServiceURL string   `json:"route_service_url,omitempty"`
}

// Routes reads routes["cf-router"]; other routers' entries are left to
// the platform's route emitter.
func Routes(r *models.ProtoRoutes) ([]executor.Route, error) {
	raw, ok := r.GetRoutes()["cf-router"]
	if !ok || len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var entries []cfRoute
	if err := json.Unmarshal(raw, &entries); err != nil {
		return nil, refuse("routes[cf-router]: %v", err)
	}
	var out []executor.Route
	for _, e := range entries {
		if e.RouteServiceURL != "" {
			return nil, refuse("route services (route_service_url) are not supported")
		}
		if e.Port == 0 || e.Port > 65535 {
			return nil, refuse("routes[cf-router]: port %d is out of range", e.Port)
		}
		out = append(out, executor.Route{Hostnames: e.Hostnames, Port: uint16(e.Port)})
	}
	return out, nil
}

// MetricTags resolves the desired LRP's metric tags for one instance.
func MetricTags(d *models.DesiredLRP, index int32, instanceGUID string) map[string]string {
	out := map[string]string{}
	for k, v := range d.GetMetricTags() {
		switch v.GetDynamic() {
		case models.MetricTagValue_INDEX:
			out[k] = fmt.Sprint(index)
		case models.MetricTagValue_INSTANCE_GUID:
			out[k] = instanceGUID
		default:
			out[k] = v.GetStatic()
		}
	}
	return out
}
