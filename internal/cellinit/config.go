package cellinit

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Config is what the agent puts on the init's command line:
//
//	cellinit [flags] -- APP [ARG...]
type Config struct {
	App []string
	// AppUser runs the app; nil keeps the init's own user (tests; a
	// privileged app is uid 0 anyway).
	AppUser *Cred
	// AppNoFile is the app's RLIMIT_NOFILE (soft, hard); zero keeps the
	// init's.
	AppNoFile Limit
	// AppHome sets HOME to the app user's home in the container's
	// /etc/passwd (runc's rule; "/" when there is none): runc set the
	// init's HOME for root, not for the app.
	AppHome bool
	// AppLog receives the app's stdout and stderr and the init's own
	// messages, capped at AppLogMaxBytes (one rotated generation), as the
	// logging binary containerd's shim would otherwise run beside the
	// container (a process of its own per container); empty leaves them
	// on the init's own stdout and stderr.
	AppLog         string
	AppLogMaxBytes int64
	// AppEnv is a file holding the app's environment (each entry followed
	// by a NUL), which the init reads and removes at its start; empty
	// gives the app the init's own. The agent starts the init with a
	// fixed environment and the app's in this file, so that the C
	// library's start-up code, run as root, never reads the app's
	// variables (GLIBC_TUNABLES and the like).
	AppEnv string

	// Proxy is the proxy's argv; empty runs no proxy.
	Proxy     []string
	ProxyUser *Cred
	// ProxyNoFile is the proxy's RLIMIT_NOFILE (soft = hard).
	ProxyNoFile uint64
	// ProxyDropCaps empties every capability set of the proxy, bounding
	// included (needs CAP_SETPCAP: the init runs as root).
	ProxyDropCaps bool
	// ProxyLog receives the proxy's stdout and stderr, capped at
	// ProxyLogMaxBytes (one rotated generation); empty discards them.
	ProxyLog         string
	ProxyLogMaxBytes int64
	// StateDir holds StateFile; empty writes none.
	StateDir string
	// MaxRestarts quick proxy exits in a row are restarted; one more
	// fails the instance.
	MaxRestarts int

	// HealthInterval is how often HealthChecks run (see health.go); zero
	// runs none. Their answer goes to the state file (Unhealthy), which
	// needs StateDir.
	HealthInterval time.Duration
	HealthChecks   []HealthCheck
	// HealthHello is the file holding the ClientHello a tls check sends.
	HealthHello string
}

// Cred is a uid and gid.
type Cred struct{ UID, GID uint32 }

func (c *Cred) String() string {
	if c == nil {
		return ""
	}
	return fmt.Sprintf("%d:%d", c.UID, c.GID)
}

// Limit is a soft and hard resource limit.
type Limit struct{ Soft, Hard uint64 }

func (l Limit) String() string { return fmt.Sprintf("%d:%d", l.Soft, l.Hard) }

// Args answers the command line that Parse reads back (the agent's side).
func (c Config) Args() []string {
	var a []string
	if c.AppUser != nil {
		a = append(a, "-app-user", c.AppUser.String())
	}
	if c.AppNoFile != (Limit{}) {
		a = append(a, "-app-nofile", c.AppNoFile.String())
	}
	if c.AppHome {
		a = append(a, "-app-home")
	}
	if c.AppLog != "" {
		a = append(a, "-app-log", c.AppLog, "-app-log-max-bytes", strconv.FormatInt(c.AppLogMaxBytes, 10))
	}
	if c.AppEnv != "" {
		a = append(a, "-app-env", c.AppEnv)
	}
	for _, p := range c.Proxy {
		a = append(a, "-proxy", p)
	}
	if c.ProxyUser != nil {
		a = append(a, "-proxy-user", c.ProxyUser.String())
	}
	if c.ProxyNoFile > 0 {
		a = append(a, "-proxy-nofile", strconv.FormatUint(c.ProxyNoFile, 10))
	}
	if c.ProxyDropCaps {
		a = append(a, "-proxy-drop-caps")
	}
	if c.ProxyLog != "" {
		a = append(a, "-proxy-log", c.ProxyLog, "-proxy-log-max-bytes", strconv.FormatInt(c.ProxyLogMaxBytes, 10))
	}
	if c.StateDir != "" {
		a = append(a, "-state-dir", c.StateDir)
	}
	if c.HealthInterval > 0 {
		a = append(a, "-health-interval", c.HealthInterval.String())
	}
	for _, h := range c.HealthChecks {
		a = append(a, "-health-check", h.String())
	}
	if c.HealthHello != "" {
		a = append(a, "-health-hello", c.HealthHello)
	}
	a = append(a, "-max-restarts", strconv.Itoa(c.MaxRestarts), "--")
	return append(a, c.App...)
}

// Parse reads the init's command line (without argv[0]).
func Parse(args []string) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("cellinit", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Func("app-user", "uid:gid of the app", credFlag(&c.AppUser))
	fs.Func("app-nofile", "soft:hard RLIMIT_NOFILE of the app", func(s string) error {
		soft, hard, err := pair(s)
		c.AppNoFile = Limit{soft, hard}
		return err
	})
	fs.BoolVar(&c.AppHome, "app-home", false, "set HOME to the app user's home")
	fs.StringVar(&c.AppLog, "app-log", "", "the app's log file")
	fs.Int64Var(&c.AppLogMaxBytes, "app-log-max-bytes", 0, "cap of the app's log file")
	fs.StringVar(&c.AppEnv, "app-env", "", "file of the app's environment, read and removed at the start")
	fs.Func("proxy", "one argument of the proxy's argv (repeated, in order)", func(s string) error {
		c.Proxy = append(c.Proxy, s)
		return nil
	})
	fs.Func("proxy-user", "uid:gid of the proxy", credFlag(&c.ProxyUser))
	fs.Uint64Var(&c.ProxyNoFile, "proxy-nofile", 0, "RLIMIT_NOFILE of the proxy")
	fs.BoolVar(&c.ProxyDropCaps, "proxy-drop-caps", false, "empty every capability set of the proxy")
	fs.StringVar(&c.ProxyLog, "proxy-log", "", "the proxy's log file")
	fs.Int64Var(&c.ProxyLogMaxBytes, "proxy-log-max-bytes", 0, "cap of the proxy's log file")
	fs.StringVar(&c.StateDir, "state-dir", "", "directory of the proxy state file")
	fs.IntVar(&c.MaxRestarts, "max-restarts", 5, "quick proxy exits in a row that are restarted")
	fs.DurationVar(&c.HealthInterval, "health-interval", 0, "how often the health checks run")
	fs.Func("health-check", "KIND:HOST:PORT[PATH], KIND tcp, http or tls (repeated)", func(s string) error {
		h, err := parseCheck(s)
		c.HealthChecks = append(c.HealthChecks, h)
		return err
	})
	fs.StringVar(&c.HealthHello, "health-hello", "", "file holding the ClientHello of the tls checks")
	if err := fs.Parse(args); err != nil {
		return c, fmt.Errorf("cellinit: %w", err)
	}
	c.App = fs.Args()
	var errs []error
	if len(c.App) == 0 {
		errs = append(errs, errors.New("no app command after the flags"))
	}
	if c.AppNoFile.Soft > c.AppNoFile.Hard {
		errs = append(errs, fmt.Errorf("app-nofile %s: soft above hard", c.AppNoFile))
	}
	if len(c.Proxy) > 0 && c.ProxyUser != nil && (c.ProxyUser.UID == 0 || c.ProxyUser.GID == 0) {
		errs = append(errs, fmt.Errorf("proxy-user %s: the proxy does not run as root", c.ProxyUser))
	}
	if c.HealthInterval < 0 || (c.HealthInterval > 0 && (len(c.HealthChecks) == 0 || c.StateDir == "")) {
		errs = append(errs, fmt.Errorf("health-interval %s: wants health checks and a state directory", c.HealthInterval))
	}
	for _, h := range c.HealthChecks {
		if h.Kind == CheckTLS && c.HealthHello == "" {
			errs = append(errs, fmt.Errorf("health-check %s: a tls check wants -health-hello", h))
		}
	}
	if c.MaxRestarts < 0 {
		errs = append(errs, fmt.Errorf("max-restarts %d: negative", c.MaxRestarts))
	}
	if err := errors.Join(errs...); err != nil {
		return c, fmt.Errorf("cellinit: %w", err)
	}
	return c, nil
}

func credFlag(dst **Cred) func(string) error {
	return func(s string) error {
		u, g, err := pair(s)
		if err != nil {
			return err
		}
		// 4294967295 is (uid_t)-1, which setresuid and setresgid take
		// as "unchanged": the target would keep the init's root.
		if u >= 1<<32-1 || g >= 1<<32-1 {
			return fmt.Errorf("%q: out of range", s)
		}
		*dst = &Cred{uint32(u), uint32(g)}
		return nil
	}
}

// pair parses "A:B" of two unsigned integers.
func pair(s string) (uint64, uint64, error) {
	a, b, ok := strings.Cut(s, ":")
	if !ok {
		return 0, 0, fmt.Errorf("%q: want A:B", s)
	}
	x, err := strconv.ParseUint(a, 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("%q: %w", s, err)
	}
	y, err := strconv.ParseUint(b, 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("%q: %w", s, err)
	}
	return x, y, nil
}
