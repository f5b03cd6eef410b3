// Package cellinit is the agent's side of cellinit, the container's first
// process when the agent runs an instance's proxy beside its app without a
// second runc run (issue 16): its command line (Config, Args, Parse), its
// state file (ProxyState, ReadState, WriteState), its health checks
// (HealthCheck; HTTPStatus and HelloAnswered are also the agent's own
// checks from the host) and the capabilities it keeps (KeptCapabilities).
// The init itself is the static C program cmd/cellinit (cellinit.c, with
// the exec-as steps of execas.c); this package's tests build it with cc
// and run it.
//
// Before it, a start ran the app as the task's process and then the proxy
// with `runc exec`: a second runc run and a second logging-driver process
// per start, which on a busy cell queue behind every other start. cellinit,
// bind-mounted read-only into the container, starts both itself, each in
// a child it forks and narrows before it execs the target:
//
//   - the app with its exact argv, environment and working directory, as
//     its own user (setgroups(0), setresgid, setresuid; a non-root app
//     keeps no effective, permitted, inheritable or ambient capability,
//     its bounding set is the container's, as runc gave it), with the
//     app's file limit; its stdout and stderr are the task's, or, with
//     AppLog, one pipe the init copies into that capped log (the app's
//     log).
//   - the proxy as the proxy's user with every capability set empty,
//     bounding included, its own file limit, working directory "/", and
//     its output in a log file of its own (never the app's log).
//
// Both with no_new_privs, HOME from the container's /etc/passwd where
// asked (runc's rule), and the executable looked up in the target's PATH
// as the target's user. A child that fails before its exec reports why on
// a close-on-exec pipe; an app that cannot be started (no executable, or
// it could not take its user) ends the init with AppStartFailed, the
// reason on stderr (in AppLog where there is one) and in the state file's
// AppError: the agent reports that as a start failure, not as the app's
// exit. Once the app runs, a root init keeps only KeptCapabilities: in its
// effective, permitted and bounding sets, with empty inheritable and
// ambient sets (it has one thread).
//
// Why C: the Go init this replaced cost ~7 ms more CPU per start (perf
// stat of the agent's command line on an idle machine: 9.8 ms against
// 2.8, a bare fork and exec of the app 1.9), most of it the Go runtime's
// start and threads: a main goroutine locked to its thread, a thread per
// start narrowed for the child, and a signal to every thread per
// capability dropped (AllThreadsSyscall).
//
// The init forwards the signals the agent sends the task (TERM, INT, HUP,
// QUIT, USR1, USR2, WINCH, ALRM, CONT) to the app only, reaps every zombie
// (it is pid 1, and a child subreaper when it is not), and exits with the
// app's status: its exit code, or 128+N for a signal N, which is what
// containerd reported for the app as the task's process. The proxy dies
// with the container.
//
// The proxy is restarted when it exits, with the policy the agent's
// supervisor had (proxyhook restartLoop): a doubling delay from 500 ms to
// 16 s, reset after a minute of running, and after MaxRestarts quick
// failures in a row no more restarts: the state says "failed" and the
// agent fails the instance. Every change is written to a state file (see
// ProxyState), replaced atomically, which the agent reads when it adopts
// a container after a restart and watches while it runs.
//
// With HealthInterval set the init also runs the instance's liveness
// checks inside the container, as Diego's healthcheck process does (see
// health.go): the app's tcp or http check and the agent's ClientHello to
// each proxy port, every interval, and writes the state file only when
// their answer changes (Unhealthy). The agent then hears of changes
// instead of probing every instance from the host every interval.
//
// Concurrency: one thread and one poll loop over a signalfd (SIGCHLD and
// the forwarded signals), the restart, retry and check timers, the app's
// and the proxy's output pipes and the running check's socket; the checks
// of a round run one after the other, non-blocking, so a slow check never
// holds up signals or reaping.
package cellinit
