package routeemitter

import "fmt"

// MaxRouterIntervalSeconds is the longest register interval a router may
// announce. Gorouter prunes a route not re-registered within its prune
// threshold (120s by default); any process that can publish router.start
// could otherwise announce an interval of hours (or one that overflows a
// time.Duration) and have the cell's routes pruned.
const MaxRouterIntervalSeconds = 120

// validRouterInterval says whether a hello's interval may be applied: 1 to
// MaxRouterIntervalSeconds, and below the router's own prune threshold when
// it announces one.
func validRouterInterval(h routerHello) error {
	v, prune := h.MinimumRegisterIntervalInSeconds, h.PruneThresholdInSeconds
	switch {
	case v <= 0:
		return fmt.Errorf("minimumRegisterIntervalInSeconds %d is not positive", v)
	case v > MaxRouterIntervalSeconds:
		return fmt.Errorf("minimumRegisterIntervalInSeconds %d is above %d", v, MaxRouterIntervalSeconds)
	case prune > 0 && v >= prune:
		return fmt.Errorf("minimumRegisterIntervalInSeconds %d is not below pruneThresholdInSeconds %d", v, prune)
	}
	return nil
}
