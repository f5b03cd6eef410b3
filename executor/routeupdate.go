package executor

// RouteUpdate replaces a running instance's routes and, when MetricTags is
// not nil, the metric tags its registrations carry (Diego's LRP update:
// the routes of a desired LRP change while its instances run).
type RouteUpdate struct {
	Routes     []Route
	MetricTags map[string]MetricTagValue
}
