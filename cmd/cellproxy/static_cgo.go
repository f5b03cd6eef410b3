//go:build cgo

package main

// cellproxy runs inside every container, whose rootfs (busybox, say) has
// none of the host's libraries: it must be static. CGO_ENABLED=0 builds
// it so; this file makes a plain `go build` with cgo on (the default where
// a C compiler is installed) link it statically too, instead of leaving a
// binary that fails only when exec'd in a container. cgo comes in through
// net's resolver, which the go:debug line in main.go keeps unused (the
// linker warns that a static getaddrinfo would need the host's glibc at
// run time: it is never called).

// #cgo LDFLAGS: -static
import "C"
