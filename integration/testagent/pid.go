package testagent

// Pid is the daemon's process id while it runs (0 before Start). For
// benchmarks that read /proc/<pid> (RSS, CPU time) or profile it.
func (a *Agent) Pid() int {
	if a.cmd == nil || a.cmd.Process == nil {
		return 0
	}
	return a.cmd.Process.Pid
}
