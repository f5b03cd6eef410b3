package executor

// RouteUpdate replaces a running instance's routes and, when MetricTags is
// not nil, the metric tags its registrations carry (Diego's LRP update:
// the routes of a desired LRP change while its instances run). With
// KeepRoutes the instance keeps the routes it has and Routes is ignored
// (an update of metric tags only, which must not put back routes read
// before a concurrent route change).
type RouteUpdate struct {
	Routes     []Route
	KeepRoutes bool
	MetricTags map[string]MetricTagValue
}
