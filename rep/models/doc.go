// Package models holds the wire types cellagent needs to be a Diego cell:
// Locket's presence messages and BBS's actual/desired LRP messages, as
// protobuf messages with the field numbers of cloudfoundry/locket and
// cloudfoundry/bbs (diego-release 9f2529a). The .proto files here declare
// only what a cell reads or writes; other fields arrive as unknown fields.
//
// The BBS, rep and Locket Go modules are not available to this build, so
// the messages are generated from our own .proto files:
//
//	go generate ./rep/models
//
// needs protoc (Debian protobuf-compiler) and protoc-gen-go on PATH
// (go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12).
package models

//go:generate protoc --go_out=. --go_opt=paths=source_relative locket.proto bbs.proto

// Actual LRP states as BBS writes them (bbs/models/actual_lrp.go).
const (
	ActualLRPStateUnclaimed = "UNCLAIMED"
	ActualLRPStateClaimed   = "CLAIMED"
	ActualLRPStateRunning   = "RUNNING"
	ActualLRPStateCrashed   = "CRASHED"
)
