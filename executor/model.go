package executor

import "time"

// Resources are what a container reserves on the cell.
type Resources struct {
	MemoryMB int `json:"memory_mb"`
	DiskMB   int `json:"disk_mb"`
	MaxPids  int `json:"max_pids,omitempty"`
}

// Process is the app's main process inside the container.
type Process struct {
	Path string   `json:"path"`
	Args []string `json:"args,omitempty"`
	Env  []string `json:"env,omitempty"`
	Dir  string   `json:"dir,omitempty"`
	// User is a user name or numeric uid present in the rootfs; default "vcap".
	User string `json:"user,omitempty"`
}

// Route is a set of hostnames served by one container port. The optional
// fields are Diego's per-route fields, sent to Gorouter in router.register
// under the same names (route-emitter routingtable/registry_message.go).
type Route struct {
	Hostnames []string `json:"hostnames"`
	Port      uint16   `json:"port"`
	// RouteServiceURL (https) makes Gorouter send requests through the route
	// service first.
	RouteServiceURL string `json:"route_service_url,omitempty"`
	// IsolationSegment: routers sharding by segment serve only their own.
	IsolationSegment string `json:"isolation_segment,omitempty"`
	// Protocol is "http1" (the default) or "http2".
	Protocol string        `json:"protocol,omitempty"`
	Options  *RouteOptions `json:"options,omitempty"`
}

// RouteOptions are Gorouter's per-route options.
type RouteOptions struct {
	// LoadBalancing is "round-robin" or "least-connection".
	LoadBalancing string `json:"loadbalancing,omitempty"`
}

// MetricTagValue is one metric tag of an instance, as Diego's
// models.MetricTagValue: a static value, or a dynamic one ("index",
// "instance_guid") filled in per instance.
type MetricTagValue struct {
	Static  string `json:"static,omitempty"`
	Dynamic string `json:"dynamic,omitempty"`
}

// BindMount mounts a host directory or file into the container. The host
// path must lie under a directory of the agent's bind_mount_allowlist.
type BindMount struct {
	HostPath      string `json:"host_path"`
	ContainerPath string `json:"container_path"`
	ReadOnly      bool   `json:"read_only"`
}

// Check is the readiness check: exactly one of TCP or HTTP.
type Check struct {
	TCP  *TCPCheck  `json:"tcp,omitempty"`
	HTTP *HTTPCheck `json:"http,omitempty"`
}

type TCPCheck struct {
	Port uint16 `json:"port"`
}

type HTTPCheck struct {
	Port uint16 `json:"port"`
	Path string `json:"path,omitempty"`
}

// CertificateProperties go into the instance identity certificate.
type CertificateProperties struct {
	OrganizationalUnit []string `json:"organizational_unit,omitempty"`
}

// Duration is a time.Duration that reads and writes Go duration strings ("60s").
type Duration time.Duration

func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// RunRequest is the body of PUT /v1/containers/{guid} and (without
// Resources) of POST /v1/containers/{guid}/run.
type RunRequest struct {
	Tags                  map[string]string      `json:"tags,omitempty"`
	LogGUID               string                 `json:"log_guid,omitempty"`
	Index                 int                    `json:"index"`
	Resources             *Resources             `json:"resources,omitempty"`
	Image                 string                 `json:"image"`
	Process               Process                `json:"process"`
	Ports                 []uint16               `json:"ports,omitempty"`
	Routes                []Route                `json:"routes,omitempty"`
	Check                 *Check                 `json:"check,omitempty"`
	CertificateProperties *CertificateProperties `json:"certificate_properties,omitempty"`
	BindMounts            []BindMount            `json:"bind_mounts,omitempty"`
	CPUWeight             int                    `json:"cpu_weight,omitempty"`
	StartTimeout          Duration               `json:"start_timeout,omitempty"`
	StopGrace             Duration               `json:"stop_grace,omitempty"`
	// EgressRules open destinations beyond the cell's network.egress.default
	// (Diego's application security groups); NetworkPolicies let other
	// instances reach this one. Both are checked by the network hook.
	EgressRules     []EgressRule    `json:"egress_rules,omitempty"`
	NetworkPolicies []NetworkPolicy `json:"network_policies,omitempty"`
	// Privileged lets the process user resolve to uid 0 or gid 0, on a cell
	// whose config sets allow_privileged (README: what that gives).
	Privileged bool `json:"privileged,omitempty"`
	// ImageAuth is the registry login for pulling a DockerImagePrefix image
	// (Diego's image_username and image_password). It is used for that
	// pull only: never written to JSON (records, API answers, events) and
	// dropped by the store once the image is there.
	ImageAuth *RegistryAuth `json:"-"`
	// MetricTags become the tags of the instance's router.register
	// messages (Gorouter's access log and metrics), as in Diego.
	MetricTags map[string]MetricTagValue `json:"metric_tags,omitempty"`
	// InternalRoutes are the instance's container-to-container hostnames
	// (Diego's internal_routes): DNS SANs of the certificate the proxy
	// serves on 61443 for app port 8080.
	InternalRoutes []InternalRoute `json:"internal_routes,omitempty"`
	// Setup runs before the process starts: its downloads are extracted
	// into the container's writable filesystem. A failed setup fails the
	// start (FailureSetup) and the process never runs.
	Setup *SetupAction `json:"setup,omitempty"`
	// CachedDependencies are archives the cell keeps extracted in its
	// download cache and mounts read-only into the container.
	CachedDependencies []CachedDependency `json:"cached_dependencies,omitempty"`
}

// DockerImagePrefix marks a run request image that the runtime pulls from
// its registry when containerd does not hold it yet:
// "docker://" + a normalized reference (docker.io/library/busybox:latest,
// 127.0.0.1:5000/app:1, registry/app@sha256:...).
const DockerImagePrefix = "docker://"

// RegistryAuth is a basic-auth login to an image registry.
type RegistryAuth struct {
	Username, Password string
}

// String keeps the password out of anything that prints the value.
func (a *RegistryAuth) String() string {
	if a == nil {
		return "<none>"
	}
	return "user " + a.Username + " (password hidden)"
}

// GoString is String for %#v.
func (a *RegistryAuth) GoString() string { return a.String() }

// InternalRoute is one internal route, as Diego's internalroutes JSON.
type InternalRoute struct {
	Hostname string `json:"hostname"`
}

// EgressRule allows an instance's new connections to some destinations, in
// the vocabulary of Diego's application security groups.
type EgressRule struct {
	// Protocol is tcp, udp, icmp or all.
	Protocol string `json:"protocol"`
	// Destinations are addresses, CIDRs or ranges "a.b.c.d-e.f.g.h".
	Destinations []string `json:"destinations"`
	// Ports ("80,443,8000-8010") apply to tcp and udp; empty means all.
	Ports string `json:"ports,omitempty"`
	// Log logs the first packets of each connection the rule allows.
	Log bool `json:"log,omitempty"`
}

// NetworkFilter is an instance's network filter as the agent applies it:
// the cell's default egress rules when it was set up, its own, the
// policies, and the packets denied so far by direction (egress, ingress).
type NetworkFilter struct {
	GUID            string            `json:"guid"`
	LogGUID         string            `json:"log_guid,omitempty"`
	DefaultEgress   []EgressRule      `json:"default_egress"`
	EgressRules     []EgressRule      `json:"egress_rules"`
	NetworkPolicies []NetworkPolicy   `json:"network_policies"`
	Denied          map[string]uint64 `json:"denied"`
	// AlwaysDenied are destinations no rule opens.
	AlwaysDenied []string `json:"always_denied"`
}

// NetworkPolicy lets the instances whose log_guid is SourceLogGUID connect
// to this instance on Ports with Protocol (tcp or udp).
type NetworkPolicy struct {
	SourceLogGUID string `json:"source_log_guid"`
	Ports         string `json:"ports"`
	Protocol      string `json:"protocol"`
}

// AllocationRequest reserves one container.
type AllocationRequest struct {
	GUID      string            `json:"guid"`
	Resources Resources         `json:"resources"`
	Tags      map[string]string `json:"tags,omitempty"`
}

// AllocationFailure says why one allocation of a batch failed.
type AllocationFailure struct {
	GUID  string `json:"guid"`
	Error *Error `json:"error"`
}

// PortMapping maps a container port to the cell. The TLS proxy fields are
// set when the proxy is enabled.
type PortMapping struct {
	ContainerPort         uint16 `json:"container_port"`
	HostPort              uint16 `json:"host_port"`
	ContainerTLSProxyPort uint16 `json:"container_tls_proxy_port,omitempty"`
	HostTLSProxyPort      uint16 `json:"host_tls_proxy_port,omitempty"`
}

// CredentialInfo describes the instance identity certificate now served.
type CredentialInfo struct {
	Serial    string    `json:"serial"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	Rotations int       `json:"rotations"`
}

// RunResult says how a completed container ended. FailureCode is for
// programs (metrics labels, explain, a scheduler's retry decision);
// FailureReason says the same for people and may change wording.
type RunResult struct {
	Failed        bool        `json:"failed"`
	FailureCode   FailureCode `json:"failure_code,omitempty"`
	FailureReason string      `json:"failure_reason"`
	Retryable     bool        `json:"retryable"`
	Stopped       bool        `json:"stopped"`
	ExitStatus    *int        `json:"exit_status,omitempty"`
}

// FailureCode says why a container failed, one of the values below. The
// set is closed: a new way to fail gets a new code here, not a new
// wording that a reader of FailureReason must match. Its string is the
// metrics label value.
type FailureCode string

const (
	// FailureAppExited: the app's process exited (before or after it
	// was ready, or while the agent was down). ExitStatus has its status.
	FailureAppExited FailureCode = "app_exited"
	// FailureStartTimeout: the instance was not ready within its start
	// timeout.
	FailureStartTimeout FailureCode = "start_timeout"
	// FailureSetup: a setup step failed (rootfs, network, credentials,
	// proxy files or start, bind mounts).
	FailureSetup FailureCode = "setup_failed"
	// FailureInsufficientResources: a setup step found no room (host
	// ports, addresses, memory).
	FailureInsufficientResources FailureCode = "insufficient_resources"
	// FailureProxyFailed: the instance proxy kept failing and was given up.
	FailureProxyFailed FailureCode = "proxy_failed"
	// FailureCertificateExpired: the instance certificate expired after
	// every rotation failed.
	FailureCertificateExpired FailureCode = "certificate_expired"
	// FailureDiskLimit: the instance wrote more than its disk_mb
	// (writable layer and logs) and was stopped.
	FailureDiskLimit FailureCode = "disk_limit_exceeded"
	// FailureAgentRestart: the agent restarted and could not take the
	// container back (task gone, or in a state it cannot resume).
	FailureAgentRestart FailureCode = "agent_restart"
	// FailureOther: anything else (the runtime refused the task, the
	// wait on it broke, the start was cancelled without a stop).
	FailureOther FailureCode = "other"
)

// MemoryUsage is memory in use, app and proxy apart.
type MemoryUsage struct {
	AppBytes   uint64 `json:"app_bytes"`
	ProxyBytes uint64 `json:"proxy_bytes"`
}

// Container is what the agent knows of one container.
type Container struct {
	GUID             string            `json:"guid"`
	State            State             `json:"state"`
	Routable         bool              `json:"routable"`
	Tags             map[string]string `json:"tags,omitempty"`
	LogGUID          string            `json:"log_guid,omitempty"`
	Index            int               `json:"index"`
	Image            string            `json:"image,omitempty"`
	Resources        Resources         `json:"resources"`
	MemoryLimitBytes uint64            `json:"memory_limit_bytes"`
	ExternalIP       string            `json:"external_ip,omitempty"`
	InternalIP       string            `json:"internal_ip,omitempty"`
	Ports            []PortMapping     `json:"ports"`
	Routes           []Route           `json:"routes,omitempty"`
	Credentials      *CredentialInfo   `json:"credentials,omitempty"`
	Memory           *MemoryUsage      `json:"memory,omitempty"`
	RunResult        RunResult         `json:"run_result"`
	CreatedAt        time.Time         `json:"created_at"`
	UpdatedAt        time.Time         `json:"updated_at"`
}

// ResourceTotals are cell-wide amounts.
type ResourceTotals struct {
	MemoryMB   int `json:"memory_mb"`
	DiskMB     int `json:"disk_mb"`
	Containers int `json:"containers"`
}

// CellState is the answer of GET /v1/state.
type CellState struct {
	CellID                string         `json:"cell_id"`
	Zone                  string         `json:"zone"`
	Evacuating            bool           `json:"evacuating"`
	Total                 ResourceTotals `json:"total"`
	Available             ResourceTotals `json:"available"`
	ProxyMemoryOverheadMB int            `json:"proxy_memory_overhead_mb"`
	Containers            map[string]int `json:"containers"`
	NATS                  string         `json:"nats"`
	// DiskFreeMB is what data_dir's filesystem has free; DiskLow says it
	// is under the agent's reserve (disk_reserve_mb): no new containers.
	DiskFreeMB int64 `json:"disk_free_mb"`
	DiskLow    bool  `json:"disk_low"`
	// Diego is a Diego cell's view (absent without a diego section).
	Diego *DiegoState `json:"diego,omitempty"`
}

// DiegoState is how a Diego cell stands with its control plane.
type DiegoState struct {
	// PresenceHeld: the cell's Locket presence is held (the auctioneer
	// can see it).
	PresenceHeld bool `json:"presence_held"`
	// BBSReachable: the last BBS call got an answer; BBSError is the last
	// failed call's error.
	BBSReachable bool   `json:"bbs_reachable"`
	BBSError     string `json:"bbs_error,omitempty"`
	Evacuating   bool   `json:"evacuating"`
	// LRPs counts the cell's LRP instances by state (RESERVED, CLAIMED,
	// RUNNING, COMPLETED); Tasks its tasks (Pending, Running, Completed).
	LRPs  map[string]int `json:"lrps"`
	Tasks map[string]int `json:"tasks"`
}

// Event types on the event stream.
const (
	EventContainerReserved   = "container_reserved"
	EventContainerState      = "container_state_changed"
	EventContainerRoutable   = "container_routable_changed"
	EventContainerDeleted    = "container_deleted"
	EventCredentialsRotated  = "credentials_rotated"
	EventCredentialsFailed   = "credentials_rotation_failed"
	EventProxyRestarted      = "proxy_restarted"
	EventReservationExpired  = "reservation_expired"
	EventContainerAdopted    = "container_adopted"
	EventContainerOrphanGone = "orphan_removed"
	EventCellEvacuating      = "cell_evacuating"
	EventCredentialsIssued   = "credentials_issued"
	EventContainerReady      = "container_ready"
	EventStopStep            = "stop_step"
	// EventRotationUnconfirmed: a rotated certificate was written but
	// the proxy's listeners were not seen serving it.
	EventRotationUnconfirmed = "rotation_unconfirmed"
)

// Event is one entry of GET /v1/events. Seq grows by one per event.
type Event struct {
	Seq     uint64    `json:"seq"`
	Type    string    `json:"type"`
	Time    time.Time `json:"time"`
	GUID    string    `json:"guid,omitempty"`
	Message string    `json:"message,omitempty"`
	// FailureCode is set on the events of a failure: an instance being
	// failed (container_state_changed "failing: ...") and its completion.
	FailureCode FailureCode `json:"failure_code,omitempty"`
	Container   *Container  `json:"container,omitempty"`
}

// Explanation is the answer of GET /v1/containers/{guid}/explain: what
// happened to an instance and, when it is not routable, why.
type Explanation struct {
	GUID     string `json:"guid"`
	State    State  `json:"state"`
	Routable bool   `json:"routable"`
	Blocker  string `json:"blocker,omitempty"`
	// FailureCode is the RunResult's code of a container that failed.
	FailureCode FailureCode `json:"failure_code,omitempty"`
	Timeline    []Event     `json:"timeline"`
	// TimelineComplete is false when older events left the buffer.
	TimelineComplete bool `json:"timeline_complete"`
	// Tags are the container's tags (a Diego instance's process guid and
	// index are there).
	Tags map[string]string `json:"tags,omitempty"`
}
