// Package netrules is the syntax of a run request's network rules: egress
// rules and network policies are checked and brought to canonical form
// (lower-case protocol, merged IPv4 ranges, merged port ranges), with every
// problem reported at once.
//
// It is a leaf over the public model so that the config (network.egress
// .default), the request validation and the network's filter share one
// reading of a rule without the config depending on the network
// (deps_test.go). Installing rules is containerstore/network's.
package netrules
