// Package executor is cellagent's public model: containers, run requests,
// resources, port mappings, states, events and error codes, plus the Client
// interface and the HTTP client that implements it.
//
// It imports the standard library only, so orchestrators and cellctl can use
// it without pulling in containerd or NATS.
//
// Container states (one transition table lives in containerstore):
//
//	reserved --> initializing --> created --> running --> completed
//	    \______________\______________\__________________/^
//	                 any state may go to completed
//
// Routable is not a state: it is a flag that is true only while the
// container is running, ready, and its proxy has been verified.
package executor
