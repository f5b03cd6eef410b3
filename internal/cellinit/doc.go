// Package cellinit is the container's first process when the agent runs an
// instance's proxy beside its app without a second runc run (issue 16).
//
// Before it, a start ran the app as the task's process and then the proxy
// with `runc exec`: a second runc run and a second logging-driver process
// per start, which on a busy cell queue behind every other start (the
// exec alone was ~55-75 ms of a one-at-a-time start and ~400 ms p50 of 20
// at once on 2 cores). cellinit, a static binary bind-mounted read-only
// into the container, starts both itself:
//
//   - the app with its exact argv, environment and working directory, as
//     its own user (setgroups(0), setgid, setuid; a non-root app keeps no
//     effective, permitted, inheritable or ambient capability, its
//     bounding set is the container's, as runc gave it), with the app's
//     file limit; its stdout and stderr are the task's, or, with AppLog,
//     one pipe the init copies into that capped log (the app's log).
//   - the proxy as the proxy's user with every capability set empty,
//     bounding included, its own file limit, working directory "/", and
//     its output in a log file of its own (never the app's log).
//
// A child's no_new_privs, bounding, inheritable and ambient sets come
// from the thread that forks it, its user from syscall.ForkExec's
// Credential (setgroups(0), setgid, setuid in the child, which empties a
// non-root user's permitted, effective and ambient sets), its file limit
// from the init's own. So the init starts a child from an OS thread of
// its own that it narrowed for that child and then lets end (startDirect,
// spawn.go): no second exec. Where that cannot give the same result it
// starts an exec-as helper instead, which changes its credentials and
// execs the target: the static C cellinit-exec (cmd/cellinit-exec) where
// the agent mounted one (Config.ExecHelper; given the app's environment
// on a descriptor and none of its own), else the init itself ("cellinit
// exec-as ...", see ExecAs, on one locked OS thread; a second Go runtime,
// ~3 ms of CPU more per start under load than the C helper). That is the
// case for a file limit the init cannot take for good, because a later
// start needs a higher hard limit and the init cannot raise its own
// without CAP_SYS_RESOURCE: the app's (the container's 1024) when the
// proxy's is higher, as it is by default (see directLimit); and for a
// non-root init given a user, or an init with securebits.
//
// An app that cannot be started (no executable, or it could not take its
// user) ends the init with AppStartFailed, the reason on stderr (in
// AppLog where there is one) and in the state file's AppError: the agent reports that as a start failure,
// not as the app's exit. Once the app runs, a root init keeps only
// KeptCapabilities (restrictSelf): in its effective, permitted and
// bounding sets, with empty inheritable and ambient sets, on every
// thread. The app was forked before that and keeps the container's
// bounding set.
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
// Concurrency: Run is one loop over signals, a restart timer and the
// health checks' rounds; one goroutine copies the proxy's output into its
// capped log file, one runs the health checks (their answers go to Run's
// loop, which alone writes the state).
package cellinit
