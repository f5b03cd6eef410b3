package network

// Exported for tests only.
var (
	ExternalIPFrom = externalIPFrom
	ParseMapped    = parseMapped
)
