package routeemitter

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/cellagent/cellagent/executor"
)

// Dynamic metric tag values, Diego's MetricTagValue_DynamicValue.
const (
	DynamicIndex        = "index"
	DynamicInstanceGUID = "instance_guid"
)

// ValidateMetricTags checks that every tag has a name and exactly one of a
// static value or a known dynamic one.
func ValidateMetricTags(tags map[string]executor.MetricTagValue) error {
	var errs []error
	for k, v := range tags {
		switch {
		case k == "" || len(k) > maxFieldLength:
			errs = append(errs, fmt.Errorf("tag name %q: 1 to %d characters", k, maxFieldLength))
		case k == "component":
			errs = append(errs, errors.New(`tag "component" is the agent's`))
		case (v.Static == "") == (v.Dynamic == ""):
			errs = append(errs, fmt.Errorf("tag %q: exactly one of static and dynamic", k))
		case v.Dynamic != "" && v.Dynamic != DynamicIndex && v.Dynamic != DynamicInstanceGUID:
			errs = append(errs, fmt.Errorf("tag %q: dynamic %q must be %q or %q", k, v.Dynamic, DynamicIndex, DynamicInstanceGUID))
		case len(v.Static) > maxFieldLength:
			errs = append(errs, fmt.Errorf("tag %q: value longer than %d characters", k, maxFieldLength))
		}
	}
	return errors.Join(errs...)
}

// ResolveMetricTags fills in the dynamic values for one instance, as
// route-emitter's populateMetricTags does for router.register tags.
func ResolveMetricTags(tags map[string]executor.MetricTagValue, guid string, index int) map[string]string {
	if len(tags) == 0 {
		return nil
	}
	out := make(map[string]string, len(tags))
	for k, v := range tags {
		switch v.Dynamic {
		case DynamicIndex:
			out[k] = strconv.Itoa(index)
		case DynamicInstanceGUID:
			out[k] = guid
		default:
			out[k] = v.Static
		}
	}
	return out
}
