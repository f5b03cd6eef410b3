// Package embeddednats runs a nats-server with JetStream inside the agent
// process ([EmbeddedNATS], an ifrit.Runner), for a single machine without an
// external NATS. It is the module's only importer of nats-server (about 50
// packages), which keeps the server out of every other binary
// (deps_test.go).
package embeddednats
