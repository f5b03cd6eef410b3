// Package execcheck checks, before anything is started, that a program
// the agent will run inside containers can run there: an executable file
// and, for a program that must not depend on the container's rootfs (the
// bundled cellproxy), a statically linked ELF for this machine's
// architecture. A dynamically linked proxy fails only when it is
// exec'd in a busybox rootfs ("exec /etc/cf-assets/envoy: no such file or
// directory": the missing file is its ELF interpreter), instance after
// instance; these checks make that a start-up error that says what to do.
//
// It owns nothing and keeps no state.
package execcheck
