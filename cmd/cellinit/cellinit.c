/*
 * cellinit in C: the container's first process that runs an app and its
 * proxy, as internal/cellinit documents it (doc.go), with the same command
 * line (cellinit.Config.Args), state file (cellinit.ProxyState) and
 * behaviour: internal/cellinit's tests run against this program.
 *
 * Why C (issue 16): the Go init cost ~7 ms more CPU per container start
 * (perf stat of the agent's command line on an idle machine: 9.8 ms
 * against 2.8 for this program, a bare fork and exec of the app 1.9),
 * most of it the Go runtime's start, the hand-offs of a main goroutine
 * locked to its thread, a thread per start for the narrowing, and
 * restrictSelf's all-threads system calls, one signal to every thread per
 * capability. This program has one thread: it forks each target and
 * narrows it in the child (the exec-as steps of execas.c, the former
 * cellinit-exec helper), drops its own capabilities with plain prctl and
 * capset calls, and runs its loop over signals, timers, the output pipes
 * and the health checks with poll.
 *
 *   cellinit [flags] -- APP [ARG...]
 *   cellinit exec-as ...          (execas.c's command line, for its tests)
 *
 * Built by scripts/lib.sh build_binaries (cc -static).
 */
#include "execas.c"

#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>

#define APP_START_FAILED 127
#define BAD_FLAGS 2
#define STATE_FILE "proxy-state.json"
#define DEFAULT_LOG_MAX (4LL << 20) /* logfile.DefaultMaxBytes */
#define HELLO_MAX (16 << 10)
#define MS 1000000LL /* ns */
#define SEC (1000 * MS)

/* The proxy's environment: a runc exec's default, nothing of the app's. */
static char *proxy_env[] = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", NULL};

/* Signals passed to the app (cellinit.Forwarded). */
static const int forwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGALRM, SIGCONT};

/* cellinit.KeptCapabilities. */
static const int kept_caps[] = {CAP_KILL, CAP_SETGID, CAP_SETUID, CAP_SETPCAP};

enum { CHECK_TCP, CHECK_HTTP, CHECK_TLS };

struct check {
	int kind;
	char *addr; /* host:port as given */
	char *path; /* http */
	struct sockaddr_storage sa;
	socklen_t salen;
	int resolved; /* the host is an IP literal */
};

static struct config {
	char **app;
	int app_user;
	uint64_t app_uid, app_gid;
	uint64_t app_soft, app_hard;
	int app_home;
	const char *app_log;
	int64_t app_log_max;
	const char *app_env; /* file of the app's environment (NUL-separated), removed once read */
	char **proxy;
	int nproxy;
	int proxy_user;
	uint64_t proxy_uid, proxy_gid;
	uint64_t proxy_nofile;
	int proxy_drop_caps;
	const char *proxy_log;
	int64_t proxy_log_max;
	const char *state_dir;
	int64_t max_restarts;
	int64_t health_interval; /* ns */
	const char *health_interval_arg;
	struct check *checks;
	int nchecks;
	const char *health_hello;
} cfg = {.max_restarts = 5};

/* ---- time ---- */

static int64_t now_ns(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * SEC + ts.tv_nsec;
}

/* ---- growable strings ---- */

struct buf {
	char *p;
	size_t len, cap;
};

static void buf_add(struct buf *b, const char *s, size_t n) {
	if (b->len + n + 1 > b->cap) {
		size_t c = b->cap ? b->cap : 256;
		while (b->len + n + 1 > c)
			c *= 2;
		char *p = realloc(b->p, c);
		if (!p)
			abort();
		b->p = p, b->cap = c;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_printf(struct buf *b, const char *fmt, ...) {
	char tmp[4096];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n < sizeof tmp) {
		buf_add(b, tmp, (size_t)n);
		return;
	}
	char *big = malloc((size_t)n + 1);
	if (!big)
		abort();
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	buf_add(b, big, (size_t)n);
	free(big);
}

static int utf8_len(const unsigned char *p, size_t avail);

/* buf_quote is Go's %q of the n bytes at s, near enough for messages. */
static void buf_quote(struct buf *b, const char *s, size_t n) {
	buf_add(b, "\"", 1);
	for (const unsigned char *p = (const unsigned char *)s, *end = p + n; p < end; p++) {
		if (*p == '"' || *p == '\\') {
			char e[2] = {'\\', (char)*p};
			buf_add(b, e, 2);
		} else if (*p == '\n') {
			buf_add(b, "\\n", 2);
		} else if (*p == '\r') {
			buf_add(b, "\\r", 2);
		} else if (*p == '\t') {
			buf_add(b, "\\t", 2);
		} else if (*p < 0x20 || *p == 0x7f) {
			buf_printf(b, "\\x%02x", *p);
		} else if (*p >= 0x80) {
			int k = utf8_len(p, (size_t)(end - p));
			if (k == 0) {
				buf_printf(b, "\\x%02x", *p);
			} else {
				buf_add(b, (const char *)p, (size_t)k);
				p += k - 1;
			}
		} else {
			buf_add(b, (const char *)p, 1);
		}
	}
	buf_add(b, "\"", 1);
}

/* ---- capped log files (logfile.Capped) ---- */

struct capped {
	char *path;
	int64_t max, size;
	int fd;
};

static int mkdir_all(const char *dir, mode_t mode) {
	char p[PATH_MAX];
	if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p)
		return ENAMETOOLONG;
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, mode) != 0 && errno != EEXIST)
			return errno;
		*s = '/';
	}
	if (mkdir(p, mode) != 0 && errno != EEXIST)
		return errno;
	return 0;
}

/* capped_open opens (appending) or creates path; 0 or an errno. */
static int capped_open(struct capped *c, const char *path, int64_t max) {
	c->path = strdup(path);
	c->max = max > 0 ? max : DEFAULT_LOG_MAX;
	char dir[PATH_MAX];
	snprintf(dir, sizeof dir, "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		int e = mkdir_all(dir, 0750);
		if (e)
			return e;
	}
	c->fd = open(path, O_CREAT | O_WRONLY | O_APPEND | O_CLOEXEC, 0640);
	if (c->fd < 0)
		return errno;
	struct stat st;
	if (fstat(c->fd, &st) != 0) {
		int e = errno;
		close(c->fd);
		return e;
	}
	c->size = st.st_size;
	return 0;
}

/* capped_write writes p, first moving a full file to path.1 (one rotated
 * generation). A write that fails loses that piece only. */
static void capped_write(struct capped *c, const char *p, size_t n) {
	if (c->size > 0 && c->size + (int64_t)n > c->max) {
		char old[PATH_MAX];
		snprintf(old, sizeof old, "%s.1", c->path);
		if (rename(c->path, old) != 0)
			return;
		int fd = open(c->path, O_CREAT | O_WRONLY | O_TRUNC | O_APPEND | O_CLOEXEC, 0640);
		if (fd < 0)
			return;
		close(c->fd);
		c->fd = fd, c->size = 0;
	}
	while (n > 0) {
		ssize_t w = write(c->fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		c->size += w, p += w, n -= (size_t)w;
	}
}

/* ---- the init's own messages ---- */

static struct capped app_log; /* fd -1: none */

/* say writes a message of the init's: to the app's log where there is
 * one (the init's own stdout and stderr then go nowhere), else stderr. */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...) {
	char msg[8192];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof msg)
		n = sizeof msg - 1;
	if (app_log.fd >= 0) {
		capped_write(&app_log, msg, (size_t)n);
		return;
	}
	for (const char *p = msg; n > 0;) {
		ssize_t w = write(2, p, (size_t)n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		p += w, n -= (int)w;
	}
}

/* ---- command line (cellinit.Parse) ---- */

static struct buf parse_err;

static void bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void bad(const char *fmt, ...) {
	char msg[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (parse_err.len > 0)
		buf_add(&parse_err, "\n", 1);
	buf_add(&parse_err, msg, strlen(msg));
}

/* parse_duration is Go's time.ParseDuration; 0 or -1. */
static int parse_duration(const char *s, int64_t *out) {
	const char *orig = s;
	int neg = 0;
	if (*s == '-' || *s == '+')
		neg = *s++ == '-';
	if (strcmp(s, "0") == 0) {
		*out = 0;
		return 0;
	}
	if (*s == '\0')
		return -1;
	long double total = 0;
	while (*s) {
		if (!((*s >= '0' && *s <= '9') || *s == '.'))
			return -1;
		const char *numstart = s;
		long double v = 0, scale = 1;
		int digits = 0, frac = 0;
		for (; (*s >= '0' && *s <= '9') || (*s == '.' && !frac); s++) {
			if (*s == '.') {
				frac = 1;
				continue;
			}
			digits++;
			if (frac) {
				scale /= 10;
				v += (*s - '0') * scale;
			} else {
				v = v * 10 + (*s - '0');
			}
		}
		if (digits == 0 || s == numstart)
			return -1;
		const char *u = s;
		while (*s && !((*s >= '0' && *s <= '9') || *s == '.'))
			s++;
		size_t ul = (size_t)(s - u);
		long double unit;
		if (ul == 2 && strncmp(u, "ns", 2) == 0)
			unit = 1;
		else if ((ul == 2 && strncmp(u, "us", 2) == 0) || (ul == 3 && (strncmp(u, "\xc2\xb5s", 3) == 0 || strncmp(u, "\xce\xbcs", 3) == 0)))
			unit = 1e3;
		else if (ul == 2 && strncmp(u, "ms", 2) == 0)
			unit = 1e6;
		else if (ul == 1 && *u == 's')
			unit = 1e9;
		else if (ul == 1 && *u == 'm')
			unit = 60e9;
		else if (ul == 1 && *u == 'h')
			unit = 3600e9;
		else
			return -1;
		total += v * unit;
		if (total > 9223372036854775807.0L)
			return -1;
	}
	(void)orig;
	*out = (int64_t)(neg ? -total : total);
	return 0;
}

/* split_host_port is net.SplitHostPort's check: host and a port, a host
 * with colons in brackets. */
static int split_host_port(const char *addr, char *host, size_t hostlen, char *port, size_t portlen) {
	const char *colon = strrchr(addr, ':');
	if (!colon)
		return -1;
	const char *h = addr, *he = colon;
	if (addr[0] == '[') {
		const char *close = strchr(addr, ']');
		if (!close || close + 1 != colon)
			return -1;
		h = addr + 1, he = close;
	} else if (memchr(addr, ':', (size_t)(colon - addr)) || strchr(addr, '[') || strchr(addr, ']')) {
		return -1;
	}
	if ((size_t)(he - h) >= hostlen || strlen(colon + 1) >= portlen)
		return -1;
	memcpy(host, h, (size_t)(he - h));
	host[he - h] = '\0';
	strcpy(port, colon + 1);
	return 0;
}

static int parse_check(const char *s, struct check *c) {
	const char *colon = strchr(s, ':');
	size_t klen = colon ? (size_t)(colon - s) : strlen(s);
	const char *rest = colon ? colon + 1 : "";
	memset(c, 0, sizeof *c);
	c->addr = strdup(rest);
	if (klen == 4 && strncmp(s, "http", 4) == 0) {
		c->kind = CHECK_HTTP;
		char *slash = strchr(c->addr, '/');
		if (slash) {
			c->path = strdup(slash);
			*slash = '\0';
		} else {
			c->path = strdup("/");
		}
		if (strpbrk(c->path, " \r\n")) {
			bad("health check \"%s\": the path holds a space or a line break", s);
			return -1;
		}
	} else if (klen == 3 && strncmp(s, "tcp", 3) == 0) {
		c->kind = CHECK_TCP;
	} else if (klen == 3 && strncmp(s, "tls", 3) == 0) {
		c->kind = CHECK_TLS;
	} else {
		bad("health check \"%s\": kind \"%.*s\" is not tcp, http or tls", s, (int)klen, s);
		return -1;
	}
	char host[256], port[64];
	if (split_host_port(c->addr, host, sizeof host, port, sizeof port) != 0 || port[0] == '\0') {
		bad("health check \"%s\": want %.*s:HOST:PORT", s, (int)klen, s);
		return -1;
	}
	uint64_t pn;
	if (parse_u64(port, port + strlen(port), &pn) == 0 && pn <= 65535) {
		struct sockaddr_in *v4 = (struct sockaddr_in *)&c->sa;
		struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&c->sa;
		if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
			v4->sin_family = AF_INET, v4->sin_port = htons((uint16_t)pn);
			c->salen = sizeof *v4, c->resolved = 1;
		} else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
			v6->sin6_family = AF_INET6, v6->sin6_port = htons((uint16_t)pn);
			c->salen = sizeof *v6, c->resolved = 1;
		}
	}
	return 0;
}

/* parse_bool is strconv.ParseBool. */
static int parse_bool(const char *v, int *out) {
	static const char *t[] = {"1", "t", "T", "TRUE", "true", "True"}, *f[] = {"0", "f", "F", "FALSE", "false", "False"};
	for (size_t i = 0; i < 6; i++) {
		if (strcmp(v, t[i]) == 0)
			return *out = 1, 0;
		if (strcmp(v, f[i]) == 0)
			return *out = 0, 0;
	}
	return -1;
}

static int parse_i64(const char *v, int64_t *out) {
	char *end;
	errno = 0;
	long long x = strtoll(v, &end, 0);
	if (errno || end == v || *end)
		return -1;
	*out = x;
	return 0;
}

/* parse_args reads the command line as Go's flag package and
 * cellinit.Parse do; -1 with the reason in parse_err (a flag error stops
 * at once, the checks after the flags are all reported). */
static int parse_args(int argc, char **argv) {
	int i = 1;
	const char *name, *value;
	size_t nlen;
	for (int r; (r = next_flag(argc, argv, &i, &name, &nlen, &value)) != 1; i++) {
		if (r < 0) {
			bad("bad flag syntax: %s", argv[i]);
			return -1;
		}
#define IS(s) (nlen == strlen(s) && strncmp(name, s, nlen) == 0)
		if (IS("app-home") || IS("proxy-drop-caps")) {
			int on = 1;
			if (value && parse_bool(value, &on) != 0) {
				bad("invalid boolean value \"%s\" for -%.*s: parse error", value, (int)nlen, name);
				return -1;
			}
			*(IS("app-home") ? &cfg.app_home : &cfg.proxy_drop_caps) = on;
			continue;
		}
		static const char *known[] = {"app-user", "app-nofile", "app-log", "app-log-max-bytes", "app-env", "proxy", "proxy-user",
					      "proxy-nofile", "proxy-log", "proxy-log-max-bytes", "state-dir", "max-restarts",
					      "health-interval", "health-check", "health-hello", NULL};
		int found = 0;
		for (int k = 0; known[k] && !found; k++)
			found = IS(known[k]);
		if (!found) {
			bad("flag provided but not defined: -%.*s", (int)nlen, name);
			return -1;
		}
		if (!value) {
			if (i + 1 >= argc) {
				bad("flag needs an argument: -%.*s", (int)nlen, name);
				return -1;
			}
			value = argv[++i];
		}
		int ok = 1;
		uint64_t a1, a2;
		if (IS("app-user") || IS("proxy-user")) {
			/* 4294967295 is (uid_t)-1: "unchanged" to setresuid. */
			ok = pair(value, &a1, &a2) == 0 && a1 < UINT32_MAX && a2 < UINT32_MAX;
			if (ok && IS("app-user"))
				cfg.app_user = 1, cfg.app_uid = a1, cfg.app_gid = a2;
			else if (ok)
				cfg.proxy_user = 1, cfg.proxy_uid = a1, cfg.proxy_gid = a2;
		} else if (IS("app-nofile")) {
			ok = pair(value, &cfg.app_soft, &cfg.app_hard) == 0;
		} else if (IS("app-log")) {
			cfg.app_log = value;
		} else if (IS("app-env")) {
			cfg.app_env = value;
		} else if (IS("app-log-max-bytes")) {
			ok = parse_i64(value, &cfg.app_log_max) == 0;
		} else if (IS("proxy")) {
			cfg.proxy = realloc(cfg.proxy, sizeof *cfg.proxy * (size_t)(cfg.nproxy + 2));
			cfg.proxy[cfg.nproxy++] = (char *)value;
			cfg.proxy[cfg.nproxy] = NULL;
		} else if (IS("proxy-nofile")) {
			ok = parse_u64(value, value + strlen(value), &cfg.proxy_nofile) == 0;
		} else if (IS("proxy-log")) {
			cfg.proxy_log = value;
		} else if (IS("proxy-log-max-bytes")) {
			ok = parse_i64(value, &cfg.proxy_log_max) == 0;
		} else if (IS("state-dir")) {
			cfg.state_dir = value;
		} else if (IS("max-restarts")) {
			ok = parse_i64(value, &cfg.max_restarts) == 0 && cfg.max_restarts >= INT32_MIN && cfg.max_restarts <= INT32_MAX;
		} else if (IS("health-interval")) {
			/* At most ~73 years: the timers add it to the monotonic clock. */
			ok = parse_duration(value, &cfg.health_interval) == 0 && cfg.health_interval < (INT64_MAX >> 3);
			cfg.health_interval_arg = value;
		} else if (IS("health-check")) {
			cfg.checks = realloc(cfg.checks, sizeof *cfg.checks * (size_t)(cfg.nchecks + 1));
			if (parse_check(value, &cfg.checks[cfg.nchecks]) != 0) {
				/* Go's flag: invalid value "v" for flag -health-check: <err> */
				struct buf b = {0};
				buf_printf(&b, "invalid value \"%s\" for flag -health-check: %s", value, parse_err.p);
				free(parse_err.p);
				parse_err = b;
				return -1;
			}
			cfg.nchecks++;
		} else if (IS("health-hello")) {
			cfg.health_hello = value;
		}
		if (!ok) {
			bad("invalid value \"%s\" for flag -%.*s: parse error", value, (int)nlen, name);
			return -1;
		}
#undef IS
	}
	cfg.app = argv + i;
	if (i >= argc)
		bad("no app command after the flags");
	if (cfg.app_soft > cfg.app_hard)
		bad("app-nofile %llu:%llu: soft above hard", (unsigned long long)cfg.app_soft, (unsigned long long)cfg.app_hard);
	if (cfg.nproxy > 0 && cfg.proxy_user && (cfg.proxy_uid == 0 || cfg.proxy_gid == 0))
		bad("proxy-user %llu:%llu: the proxy does not run as root", (unsigned long long)cfg.proxy_uid,
		    (unsigned long long)cfg.proxy_gid);
	if (cfg.health_interval < 0 || (cfg.health_interval > 0 && (cfg.nchecks == 0 || !cfg.state_dir || !*cfg.state_dir)))
		bad("health-interval %s: wants health checks and a state directory", cfg.health_interval_arg);
	for (int k = 0; k < cfg.nchecks; k++)
		if (cfg.checks[k].kind == CHECK_TLS && (!cfg.health_hello || !*cfg.health_hello))
			bad("health-check tls:%s: a tls check wants -health-hello", cfg.checks[k].addr);
	if (cfg.max_restarts < 0)
		bad("max-restarts %lld: negative", (long long)cfg.max_restarts);
	return parse_err.len > 0 ? -1 : 0;
}

/* ---- the state file (cellinit.ProxyState) ---- */

static struct state {
	uint64_t seq;
	const char *phase; /* "" until the proxy starts */
	int pid;
	int status;
	int failures;
	int64_t restart_in_ms;
	char *error;
	char *app_error;
	int health_checks;
	char *unhealthy;
} st = {.phase = ""};

/* utf8_len answers the length of the valid UTF-8 sequence at p (1-4, in
 * at most avail bytes), or 0 where p holds none (where Go's
 * utf8.DecodeRune answers RuneError of width 1). */
static int utf8_len(const unsigned char *p, size_t avail) {
	if (p[0] < 0x80)
		return 1;
	int n = p[0] >= 0xf0 && p[0] <= 0xf4 ? 4 : p[0] >= 0xe0 ? 3 : p[0] >= 0xc2 && p[0] <= 0xdf ? 2 : 0;
	if (n == 0 || (n == 3 && p[0] > 0xef) || (size_t)n > avail)
		return 0;
	for (int i = 1; i < n; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	unsigned cp = n == 2 ? (p[0] & 0x1fu) << 6 | (p[1] & 0x3fu)
		      : n == 3 ? (p[0] & 0x0fu) << 12 | (p[1] & 0x3fu) << 6 | (p[2] & 0x3fu)
			       : (p[0] & 0x07u) << 18 | (p[1] & 0x3fu) << 12 | (p[2] & 0x3fu) << 6 | (p[3] & 0x3fu);
	if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return n;
}

/* json_string writes s as a JSON string, as encoding/json does: invalid
 * UTF-8 as U+FFFD, <, > and & escaped. */
static void json_string(struct buf *b, const char *s) {
	buf_add(b, "\"", 1);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p >= 0x80) {
			int n = utf8_len(p, strlen((const char *)p));
			if (n == 0) {
				buf_add(b, "\\ufffd", 6);
			} else {
				buf_add(b, (const char *)p, (size_t)n);
				p += n - 1;
			}
			continue;
		}
		switch (*p) {
		case '"':
			buf_add(b, "\\\"", 2);
			break;
		case '\\':
			buf_add(b, "\\\\", 2);
			break;
		case '\n':
			buf_add(b, "\\n", 2);
			break;
		case '\r':
			buf_add(b, "\\r", 2);
			break;
		case '\t':
			buf_add(b, "\\t", 2);
			break;
		case '<':
		case '>':
		case '&':
			buf_printf(b, "\\u%04x", *p);
			break;
		default:
			if (*p < 0x20)
				buf_printf(b, "\\u%04x", *p);
			else
				buf_add(b, (const char *)p, 1);
		}
	}
	buf_add(b, "\"", 1);
}

static void set_str(char **dst, const char *s) {
	free(*dst);
	*dst = s && *s ? strdup(s) : NULL;
}

/* write_state_file replaces the state file (atomicfile.WriteFile with
 * NoSync: it outlives only the container); 0 or an errno. */
static int write_state_file(void) {
	struct buf b = {0};
	buf_printf(&b, "{\"seq\":%llu,\"phase\":", (unsigned long long)st.seq);
	json_string(&b, st.phase);
	if (st.pid)
		buf_printf(&b, ",\"pid\":%d", st.pid);
	buf_printf(&b, ",\"status\":%d,\"failures\":%d", st.status, st.failures);
	if (st.restart_in_ms)
		buf_printf(&b, ",\"restart_in_ms\":%lld", (long long)st.restart_in_ms);
	if (st.error)
		buf_add(&b, ",\"error\":", 9), json_string(&b, st.error);
	if (st.app_error)
		buf_add(&b, ",\"app_error\":", 13), json_string(&b, st.app_error);
	if (st.health_checks)
		buf_add(&b, ",\"health_checks\":true", 21);
	if (st.unhealthy)
		buf_add(&b, ",\"unhealthy\":", 13), json_string(&b, st.unhealthy);
	buf_add(&b, "}\n", 2);

	char path[PATH_MAX], tmp[PATH_MAX];
	snprintf(path, sizeof path, "%s/%s", cfg.state_dir, STATE_FILE);
	int fd = -1, e = 0;
	for (int try = 0; try < 100 && fd < 0; try++) {
		snprintf(tmp, sizeof tmp, "%s/.%s.tmp-%u", cfg.state_dir, STATE_FILE, (unsigned)now_ns() ^ ((unsigned)getpid() << 16) ^ (unsigned)try);
		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0 && errno != EEXIST)
			break;
	}
	if (fd < 0) {
		free(b.p);
		return errno;
	}
	if (fchmod(fd, 0640) != 0)
		e = errno;
	for (size_t off = 0; !e && off < b.len;) {
		ssize_t w = write(fd, b.p + off, b.len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			e = w < 0 ? errno : EIO;
		else
			off += (size_t)w;
	}
	if (close(fd) != 0 && !e)
		e = errno;
	if (!e && rename(tmp, path) != 0)
		e = errno;
	if (e)
		unlink(tmp);
	free(b.p);
	return e;
}

/* ---- the supervisor's state ---- */

static int app_pid, proxy_pid;
static int64_t proxy_started;
static int app_out = -1;   /* read end of the app's output pipe */
static int proxy_out = -1; /* read end of the proxy's output pipe */
static int proxy_out_w = -1;
static struct capped proxy_log = {.fd = -1};
static int dev_null = -1;
static int dirty;
static int64_t retry_at, restart_at, soon_at, soon_until; /* 0: not armed */

/* The proxy's restart policy (restartPolicy): a doubling delay from 500 ms
 * to 16 s, reset after a minute of running; more than max_restarts quick
 * failures in a row give up. */
static int failures;
static int64_t delay = 500 * MS;
#define DELAY_MIN (500 * MS)
#define DELAY_MAX (16 * SEC)
#define RESET_AFTER (60 * SEC)
#define RETRY_INTERVAL SEC
#define RESTART_ROUND_EVERY (250 * MS)
#define RESTART_ROUNDS_FOR (30 * SEC)
#define APP_OUTPUT_DRAIN (250 * MS)

static int policy_failed(int64_t *d) {
	failures++;
	if (failures > cfg.max_restarts)
		return 1;
	*d = delay;
	delay = delay * 2 < DELAY_MAX ? delay * 2 : DELAY_MAX;
	return 0;
}

static int policy_exited(int64_t ran_for, int64_t *d) {
	if (ran_for > RESET_AFTER)
		failures = 0, delay = DELAY_MIN;
	return policy_failed(d);
}

static void write_state(void) {
	if (!cfg.state_dir || !*cfg.state_dir)
		return;
	st.seq++;
	int e = write_state_file();
	dirty = e != 0;
	if (e) {
		say("cellinit: write proxy state: write %s/%s: %s\n", cfg.state_dir, STATE_FILE, errstr(e));
		if (!retry_at)
			retry_at = now_ns() + RETRY_INTERVAL;
	}
}

/* ---- starting a target ---- */

struct target {
	int user;
	uint64_t uid, gid;
	int nofile;
	uint64_t soft, hard;
	int drop_caps, home;
	const char *dir;
	char **env, **argv;
};

static sigset_t old_mask;

/* spawn forks t with fds as its descriptors 0, 1, 2 and waits for its
 * exec: the pid, or -1 with the reason in err (what the child's exec-as
 * steps reported; the child exits 127 and the SIGCHLD loop reaps it). */
static int spawn(const struct target *t, const int fds[3], char *err, size_t errlen) {
	int p[2];
	if (pipe2(p, O_CLOEXEC) != 0) {
		snprintf(err, errlen, "pipe: %s", errstr(errno));
		return -1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		snprintf(err, errlen, "fork: %s", errstr(errno));
		close(p[0]), close(p[1]);
		return -1;
	}
	if (pid == 0) {
		/* The child: default signal handling and the signal mask the
		 * init was started with, as Go's ForkExec gave them (an ignored
		 * or blocked signal would stay so across exec). */
		struct sigaction dfl = {.sa_handler = SIG_DFL};
		for (int s = 1; s < NSIG; s++)
			(void)sigaction(s, &dfl, NULL);
		sigprocmask(SIG_SETMASK, &old_mask, NULL);
		/* Descriptors 0-2 from fds, the error pipe at 3 (ERR_FD): moved
		 * above 3 first so that no dup2 overwrites one still to come. */
		int hi[4];
		for (int k = 0; k < 3; k++)
			hi[k] = fcntl(fds[k], F_DUPFD_CLOEXEC, 10);
		hi[3] = fcntl(p[1], F_DUPFD_CLOEXEC, 10);
		for (int k = 0; k < 4; k++) {
			if (hi[k] >= 0 && dup2(hi[k], k) == k)
				continue;
			char msg[128];
			int n = snprintf(msg, sizeof msg, "set up descriptor %d: %s", k, errstr(errno));
			if (hi[3] >= 0)
				(void)!write(hi[3], msg, (size_t)n);
			_exit(APP_START_FAILED);
		}
		/* Nothing else reaches the target: the init's own descriptors
		 * are close-on-exec, but one it inherited open may not be. */
		if (syscall(SYS_close_range, 4U, ~0U, 0) != 0)
			for (int fd = 4; fd < 4096; fd++)
				close(fd);
		exec_as(t->user, t->uid, t->gid, t->nofile, t->soft, t->hard, t->drop_caps, t->home, t->dir, t->env, t->argv);
	}
	close(p[1]);
	size_t n = 0;
	for (;;) {
		ssize_t r = read(p[0], err + n, errlen - 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		n += (size_t)r;
		if (n >= errlen - 1)
			break;
	}
	close(p[0]);
	err[n] = '\0';
	return n > 0 ? -1 : pid;
}

/* ---- the init's own capabilities (restrictSelf) ---- */

/* restrict_self leaves a root init the kept capabilities the container
 * granted, in its bounding, permitted and effective sets, with empty
 * inheritable and ambient sets; 0 or -1 with the reason in err. One
 * thread: plain prctl and capset calls. */
static int restrict_self(char *err, size_t errlen) {
	if (getuid() != 0)
		return 0;
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct cur[2];
	if (syscall(SYS_capget, &hdr, cur) != 0) {
		snprintf(err, errlen, "read the init's capabilities: %s", errstr(errno));
		return -1;
	}
	uint64_t permitted = (uint64_t)cur[1].permitted << 32 | cur[0].permitted, keep = 0;
	for (size_t k = 0; k < sizeof kept_caps / sizeof kept_caps[0]; k++)
		keep |= 1ULL << kept_caps[k];
	keep &= permitted;
	for (int c = 0; c < 64; c++) {
		if (keep & (1ULL << c))
			continue;
		int held = prctl(PR_CAPBSET_READ, c, 0, 0, 0);
		if (held < 0 && errno == EINVAL)
			break; /* past the kernel's last capability */
		if (held == 0)
			continue;
		if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) != 0) {
			snprintf(err, errlen, "drop capability %d from the init's bounding set: %s", c, errstr(errno));
			return -1;
		}
	}
	/* An empty inheritable set empties the ambient one with it. */
	hdr.version = _LINUX_CAPABILITY_VERSION_3;
	struct __user_cap_data_struct data[2] = {
	    {.effective = (uint32_t)keep, .permitted = (uint32_t)keep},
	    {.effective = (uint32_t)(keep >> 32), .permitted = (uint32_t)(keep >> 32)}};
	if (syscall(SYS_capset, &hdr, data) != 0) {
		snprintf(err, errlen, "restrict the init's capabilities: %s", errstr(errno));
		return -1;
	}
	return 0;
}

/* ---- the proxy ---- */

static void settle(int status, int64_t d, int give_up) {
	st.status = status, st.failures = failures, st.pid = 0;
	if (give_up) {
		st.phase = "failed", st.restart_in_ms = 0;
		say("cellinit: proxy exited %d times in a row (last status %d): not restarted\n", failures, status);
	} else {
		st.phase = "exited", st.restart_in_ms = d / MS;
		restart_at = now_ns() + d;
	}
	write_state();
}

static void start_proxy(void) {
	int fds[3] = {dev_null, dev_null, dev_null};
	if (proxy_out_w >= 0)
		fds[1] = fds[2] = proxy_out_w;
	struct target t = {.user = cfg.proxy_user, .uid = cfg.proxy_uid, .gid = cfg.proxy_gid,
			   .nofile = cfg.proxy_nofile > 0, .soft = cfg.proxy_nofile, .hard = cfg.proxy_nofile,
			   .drop_caps = cfg.proxy_drop_caps, .home = 1, .dir = "/", .env = proxy_env, .argv = cfg.proxy};
	char err[4096];
	int pid = spawn(&t, fds, err, sizeof err);
	if (pid < 0) {
		set_str(&st.error, err);
		int64_t d = 0;
		int give_up = policy_failed(&d);
		settle(255, d, give_up);
		return;
	}
	proxy_pid = pid, proxy_started = now_ns();
	st.phase = "running", st.pid = pid, st.restart_in_ms = 0;
	set_str(&st.error, NULL);
	write_state();
}

/* open_proxy_output makes the pipe the proxy writes to; the loop copies
 * it into the proxy's capped log, or reads it to nothing without one. */
static void open_proxy_output(void) {
	int p[2];
	if (pipe2(p, O_CLOEXEC) != 0) {
		say("cellinit: proxy output: pipe: %s\n", errstr(errno));
		return;
	}
	if (cfg.proxy_log && *cfg.proxy_log) {
		int e = capped_open(&proxy_log, cfg.proxy_log, cfg.proxy_log_max);
		if (e) {
			say("cellinit: proxy output: open %s: %s\n", cfg.proxy_log, errstr(e));
			proxy_log.fd = -1;
			close(p[0]), close(p[1]);
			return;
		}
	}
	proxy_out = p[0], proxy_out_w = p[1];
}

/* ---- health checks (health.go), one at a time in the loop ---- */

static unsigned char *hello;
static size_t hello_len;
static int64_t next_round; /* 0: none scheduled */
static int kicked;

enum { IDLE, CONNECTING, SENDING, READING };
static struct {
	int phase;
	int idx; /* the check running */
	int fd;
	int64_t deadline;
	struct buf req;
	size_t sent;
	char in[4097];
	size_t got;
} round_ = {.phase = IDLE, .fd = -1};

static void addr_str(const struct sockaddr_storage *sa, char *out, size_t n) {
	char ip[INET6_ADDRSTRLEN] = "?";
	if (sa->ss_family == AF_INET) {
		const struct sockaddr_in *v4 = (const void *)sa;
		inet_ntop(AF_INET, &v4->sin_addr, ip, sizeof ip);
		snprintf(out, n, "%s:%u", ip, ntohs(v4->sin_port));
	} else {
		const struct sockaddr_in6 *v6 = (const void *)sa;
		inet_ntop(AF_INET6, &v6->sin6_addr, ip, sizeof ip);
		snprintf(out, n, "[%s]:%u", ip, ntohs(v6->sin6_port));
	}
}

/* io_err is Go's net.OpError text: "read tcp L->R: reason". */
static void io_err(char *out, size_t n, const char *op, const struct check *c, const char *why) {
	struct sockaddr_storage local;
	socklen_t l = sizeof local;
	char ls[80] = "", rs[80];
	if (getsockname(round_.fd, (struct sockaddr *)&local, &l) == 0)
		addr_str(&local, ls, sizeof ls);
	addr_str(&c->sa, rs, sizeof rs);
	snprintf(out, n, "%s tcp %s->%s: %s", op, ls, rs, why);
}

static void health_round_done(const char *result);

/* check_failed ends the round with check c's failure why, in the words
 * of the agent's own checks. */
static void check_failed(const struct check *c, const char *why) {
	struct buf b = {0};
	switch (c->kind) {
	case CHECK_HTTP:
		buf_printf(&b, "http check on http://%s%s: %s", c->addr, c->path, why);
		break;
	case CHECK_TLS:
		buf_printf(&b, "proxy not ready on %s: %s", c->addr, why);
		break;
	default:
		buf_printf(&b, "tcp check on %s: %s", c->addr, why);
	}
	if (round_.fd >= 0)
		close(round_.fd), round_.fd = -1;
	round_.phase = IDLE;
	health_round_done(b.p);
	free(b.p);
}

static void start_check(int idx);

static void check_passed(void) {
	if (round_.fd >= 0)
		close(round_.fd), round_.fd = -1;
	if (round_.idx + 1 < cfg.nchecks) {
		start_check(round_.idx + 1);
		return;
	}
	round_.phase = IDLE;
	health_round_done("");
}

static void start_check(int idx) {
	const struct check *c = &cfg.checks[idx];
	int64_t timeout = c->kind == CHECK_TLS ? 2 * SEC : SEC;
	round_.idx = idx, round_.got = 0, round_.sent = 0, round_.req.len = 0;
	if (!c->resolved) {
		char why[512];
		snprintf(why, sizeof why, "dial tcp %s: cellinit dials IP addresses only", c->addr);
		check_failed(c, why);
		return;
	}
	round_.fd = socket(c->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (round_.fd < 0) {
		char why[512];
		snprintf(why, sizeof why, "dial tcp %s: socket: %s", c->addr, errstr(errno));
		check_failed(c, why);
		return;
	}
	round_.deadline = now_ns() + timeout;
	round_.phase = CONNECTING;
	if (connect(round_.fd, (const struct sockaddr *)&c->sa, c->salen) == 0 || errno == EINPROGRESS)
		return; /* the loop waits for POLLOUT */
	char why[512];
	snprintf(why, sizeof why, "dial tcp %s: connect: %s", c->addr, errstr(errno));
	check_failed(c, why);
}

/* check_connected follows a connect that completed: a tcp check passes,
 * the others send their request (deadline: timeout from now, as Go's
 * SetDeadline after the dial). */
static void check_connected(const struct check *c) {
	int64_t timeout = c->kind == CHECK_TLS ? 2 * SEC : SEC;
	if (c->kind == CHECK_TCP) {
		check_passed();
		return;
	}
	round_.deadline = now_ns() + timeout;
	if (c->kind == CHECK_HTTP)
		buf_printf(&round_.req, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: cellinit\r\n\r\n", c->path, c->addr);
	else
		buf_add(&round_.req, (const char *)hello, hello_len);
	round_.phase = SENDING;
}

/* check_status judges an http check's status line (HTTPStatus). */
static void check_status(const struct check *c) {
	/* The line up to its '\n', with an explicit length: a NUL byte in it
	 * is part of it, as for Go. */
	const char *line = round_.in;
	const char *nl = memchr(line, '\n', round_.got);
	size_t n = nl ? (size_t)(nl - line) : round_.got;
	while (n > 0 && line[n - 1] == '\r')
		n--;
	/* proto SP code [SP ...]; the code as strconv.Atoi takes it: an
	 * optional sign and one or more digits, nothing else. */
	const char *sp = memchr(line, ' ', n);
	const char *code = sp ? sp + 1 : line + n;
	const char *code_end = sp ? memchr(code, ' ', (size_t)(line + n - code)) : NULL;
	if (!code_end)
		code_end = line + n;
	const char *d = code + (code < code_end && (*code == '+' || *code == '-'));
	int ok = n >= 5 && memcmp(line, "HTTP/", 5) == 0 && sp && d < code_end && code_end - d <= 9;
	long status = 0;
	for (const char *q = d; ok && q < code_end; q++) {
		if (*q < '0' || *q > '9')
			ok = 0;
		else
			status = status * 10 + (*q - '0');
	}
	if (!ok) {
		struct buf b = {0};
		buf_add(&b, "malformed status line ", 22);
		buf_quote(&b, line, n);
		check_failed(c, b.p);
		free(b.p);
		return;
	}
	if (*code == '-')
		status = -status;
	if (status / 100 != 2) {
		char why[64];
		snprintf(why, sizeof why, "status %ld", status);
		check_failed(c, why);
		return;
	}
	check_passed();
}

/* check_io moves the running check on after poll answered revents. */
static void check_io(short revents) {
	const struct check *c = &cfg.checks[round_.idx];
	char why[1024];
	if (round_.phase == CONNECTING) {
		int e = 0;
		socklen_t l = sizeof e;
		if (getsockopt(round_.fd, SOL_SOCKET, SO_ERROR, &e, &l) != 0)
			e = errno;
		if (e == 0 && !(revents & (POLLOUT | POLLERR | POLLHUP)))
			return;
		if (e != 0) {
			snprintf(why, sizeof why, "dial tcp %s: connect: %s", c->addr, errstr(e));
			check_failed(c, why);
			return;
		}
		check_connected(c);
		if (round_.phase != SENDING)
			return;
	}
	if (round_.phase == SENDING) {
		while (round_.sent < round_.req.len) {
			ssize_t w = send(round_.fd, round_.req.p + round_.sent, round_.req.len - round_.sent, MSG_NOSIGNAL);
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				return;
			if (w < 0) {
				char inner[512];
				io_err(inner, sizeof inner, "write", c, errstr(errno));
				if (c->kind == CHECK_TLS)
					snprintf(why, sizeof why, "send ClientHello: %s", inner);
				else
					snprintf(why, sizeof why, "%s", inner);
				check_failed(c, why);
				return;
			}
			round_.sent += (size_t)w;
		}
		round_.phase = READING;
		return;
	}
	if (round_.phase != READING)
		return;
	size_t want = c->kind == CHECK_TLS ? 5 : 4096;
	while (round_.got < want) {
		ssize_t r = recv(round_.fd, round_.in + round_.got, want - round_.got, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (r <= 0) {
			char inner[512];
			if (r == 0)
				snprintf(inner, sizeof inner, "%s", c->kind == CHECK_TLS && round_.got > 0 ? "unexpected EOF" : "EOF");
			else
				io_err(inner, sizeof inner, "read", c, errstr(errno));
			if (c->kind == CHECK_TLS)
				snprintf(why, sizeof why, "no answer to a ClientHello: %s", inner);
			else
				snprintf(why, sizeof why, "no status line: %s", inner);
			check_failed(c, why);
			return;
		}
		round_.got += (size_t)r;
		if (c->kind == CHECK_HTTP && memchr(round_.in, '\n', round_.got)) {
			check_status(c);
			return;
		}
	}
	if (c->kind == CHECK_HTTP) {
		/* 4096 bytes without a line break: the limit ends the read. */
		check_failed(c, "no status line: EOF");
		return;
	}
	unsigned char type = (unsigned char)round_.in[0];
	if (type == 22) {
		check_passed();
	} else if (type == 21) {
		check_failed(c, "the proxy answered a ClientHello with a TLS alert");
	} else {
		snprintf(why, sizeof why, "the proxy answered a ClientHello with a record of type %d", type);
		check_failed(c, why);
	}
}

static void check_timeout(void) {
	const struct check *c = &cfg.checks[round_.idx];
	char why[1200], inner[1024];
	if (round_.phase == CONNECTING) {
		snprintf(why, sizeof why, "dial tcp %s: i/o timeout", c->addr);
	} else {
		io_err(inner, sizeof inner, round_.phase == SENDING ? "write" : "read", c, "i/o timeout");
		if (c->kind == CHECK_TLS)
			snprintf(why, sizeof why, "%s: %s", round_.phase == SENDING ? "send ClientHello" : "no answer to a ClientHello", inner);
		else
			snprintf(why, sizeof why, round_.phase == SENDING ? "%s" : "no status line: %s", inner);
	}
	check_failed(c, why);
}

static void start_round(void) {
	kicked = 0;
	start_check(0);
}

/* health_round_done records a round's answer (healthRound): written when
 * it changed, or when the last write failed. */
static void health_round_done(const char *result) {
	if (*result == '\0')
		soon_at = 0; /* the restarted proxy (and the app) pass */
	const char *cur = st.unhealthy ? st.unhealthy : "";
	if (strcmp(result, cur) != 0 || dirty) {
		set_str(&st.unhealthy, result);
		write_state();
	}
}

/* kick asks for a round now (one already asked for is enough). */
static void kick(void) {
	if (round_.phase == IDLE)
		start_round();
	else
		kicked = 1;
}

static int start_health(void) {
	if (cfg.health_interval <= 0 || cfg.nchecks == 0)
		return 0;
	if (cfg.health_hello && *cfg.health_hello) {
		int fd = open(cfg.health_hello, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			say("cellinit: health checks left to the agent: open %s: %s\n", cfg.health_hello, errstr(errno));
			return 0;
		}
		hello = malloc(HELLO_MAX);
		for (;;) {
			ssize_t r = read(fd, hello + hello_len, HELLO_MAX - hello_len);
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0) {
				say("cellinit: health checks left to the agent: read %s: %s\n", cfg.health_hello, errstr(errno));
				close(fd);
				return 0;
			}
			if (r == 0 || (hello_len += (size_t)r) == HELLO_MAX)
				break;
		}
		close(fd);
	}
	st.health_checks = 1;
	next_round = now_ns() + cfg.health_interval;
	return 1;
}

/* ---- the app's output and exit ---- */

static void copy_out(int *fd, struct capped *log) {
	char b[32 << 10];
	ssize_t r = read(*fd, b, sizeof b);
	if (r < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (r <= 0) {
		close(*fd);
		*fd = -1;
		return;
	}
	if (log && log->fd >= 0)
		capped_write(log, b, (size_t)r);
}

/* finish_app_output copies what the app wrote before it exited, for at
 * most APP_OUTPUT_DRAIN: only a process the app left behind that still
 * holds the pipe makes it wait that long. */
static void finish_app_output(void) {
	int64_t until = now_ns() + APP_OUTPUT_DRAIN;
	while (app_out >= 0) {
		int64_t left = until - now_ns();
		if (left <= 0)
			break;
		struct pollfd p = {.fd = app_out, .events = POLLIN};
		int n = poll(&p, 1, (int)((left + MS - 1) / MS));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		copy_out(&app_out, &app_log);
	}
}

static int app_failed(const char *why) {
	say("cellinit: could not start the app: %s\n", why);
	set_str(&st.app_error, why);
	write_state();
	return APP_START_FAILED;
}

/* load_app_env reads the app's environment from path (NUL-terminated
 * entries, at most 16 MB) and removes the file: the agent starts the init
 * with a fixed environment of its own, so that the C library's start-up
 * code, run as root, never reads the app's variables (GLIBC_TUNABLES and
 * the like), and hands the app's over in this file, 0600, root's. 0 or an
 * errno. */
static int load_app_env(const char *path, char ***out) {
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return errno;
	struct buf b = {0};
	char chunk[65536];
	for (;;) {
		ssize_t r = read(fd, chunk, sizeof chunk);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = errno;
			close(fd);
			free(b.p);
			return e;
		}
		if (r == 0)
			break;
		if (b.len + (size_t)r > ENV_MAX) {
			close(fd);
			free(b.p);
			return EFBIG;
		}
		buf_add(&b, chunk, (size_t)r);
	}
	close(fd);
	(void)unlink(path);
	size_t n = 0;
	for (size_t i = 0; i < b.len; i++)
		n += b.p[i] == '\0';
	char **env = calloc(n + 2, sizeof *env);
	if (!env)
		return ENOMEM;
	size_t m = 0;
	for (size_t at = 0; at < b.len; at += strlen(b.p + at) + 1)
		env[m++] = b.p + at; /* a last entry without its NUL ends at buf_add's */
	env[m] = NULL;
	*out = env;
	return 0;
}

static int exit_status(int ws) { return WIFSIGNALED(ws) ? 128 + WTERMSIG(ws) : WEXITSTATUS(ws); }

static void stop_proxy(void) {
	if (proxy_pid > 0) {
		kill(proxy_pid, SIGKILL);
		int ws;
		while (waitpid(proxy_pid, &ws, 0) < 0 && errno == EINTR)
			;
	}
}

/* reap collects every exited child: 1 with *status once the app exited. */
static int reap(int *status) {
	for (;;) {
		int ws;
		pid_t pid = waitpid(-1, &ws, WNOHANG);
		if (pid < 0 && errno == EINTR)
			continue;
		if (pid <= 0)
			return 0;
		if (pid == app_pid) {
			*status = exit_status(ws);
			return 1;
		}
		if (pid == proxy_pid) {
			proxy_pid = 0;
			int64_t d = 0;
			int give_up = policy_exited(now_ns() - proxy_started, &d);
			settle(exit_status(ws), d, give_up);
		}
	}
}

static int64_t earliest(int64_t a, int64_t b) { return !a ? b : !b ? a : a < b ? a : b; }

static int run(void) {
	(void)prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
	signal(SIGPIPE, SIG_IGN);
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	for (size_t k = 0; k < sizeof forwarded / sizeof forwarded[0]; k++)
		sigaddset(&mask, forwarded[k]);
	sigprocmask(SIG_BLOCK, &mask, &old_mask);
	int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0)
		return app_failed("signalfd");
	dev_null = open("/dev/null", O_RDWR | O_CLOEXEC);

	int fds[3] = {0, 1, 2};
	int app_w = -1;
	if (cfg.app_log && *cfg.app_log) {
		int e = capped_open(&app_log, cfg.app_log, cfg.app_log_max);
		if (e) {
			app_log.fd = -1;
			char why[PATH_MAX + 128];
			snprintf(why, sizeof why, "open the app's log: open %s: %s", cfg.app_log, errstr(e));
			return app_failed(why);
		}
		int p[2];
		if (pipe2(p, O_CLOEXEC) != 0)
			return app_failed("open the app's log: pipe");
		app_out = p[0], app_w = p[1];
		fds[1] = fds[2] = app_w;
	}
	char **app_env = environ;
	if (cfg.app_env && *cfg.app_env) {
		int e = load_app_env(cfg.app_env, &app_env);
		if (e) {
			if (app_w >= 0)
				close(app_w);
			char why[PATH_MAX + 128];
			snprintf(why, sizeof why, "read the app's environment %s: %s", cfg.app_env, errstr(e));
			return app_failed(why);
		}
	}
	struct target app = {.user = cfg.app_user, .uid = cfg.app_uid, .gid = cfg.app_gid,
			     .nofile = cfg.app_soft != 0 || cfg.app_hard != 0, .soft = cfg.app_soft, .hard = cfg.app_hard,
			     .home = cfg.app_home, .env = app_env, .argv = cfg.app};
	char err[4096];
	app_pid = spawn(&app, fds, err, sizeof err);
	if (app_w >= 0)
		close(app_w); /* the app has its own: EOF once it and its children are gone */
	if (app_pid < 0) {
		finish_app_output(); /* the child's last words before the init's */
		return app_failed(err);
	}
	if (restrict_self(err, sizeof err) != 0) {
		kill(app_pid, SIGKILL);
		int ws;
		waitpid(app_pid, &ws, 0);
		finish_app_output();
		return app_failed(err);
	}
	int health = start_health();
	if (cfg.nproxy > 0) {
		open_proxy_output();
		start_proxy();
	} else if (health) {
		write_state(); /* the agent learns that the init checks */
	}

	for (;;) {
		struct pollfd pfd[4];
		int n = 0, at_sig = n++, at_app = -1, at_proxy = -1, at_check = -1;
		pfd[at_sig] = (struct pollfd){.fd = sfd, .events = POLLIN};
		if (app_out >= 0)
			at_app = n, pfd[n++] = (struct pollfd){.fd = app_out, .events = POLLIN};
		if (proxy_out >= 0)
			at_proxy = n, pfd[n++] = (struct pollfd){.fd = proxy_out, .events = POLLIN};
		if (round_.phase != IDLE)
			at_check = n, pfd[n++] = (struct pollfd){.fd = round_.fd, .events = round_.phase == READING ? POLLIN : POLLOUT};
		int64_t wake = earliest(earliest(retry_at, restart_at), soon_at);
		wake = earliest(wake, round_.phase != IDLE ? round_.deadline : next_round);
		int timeout = -1;
		if (wake) {
			int64_t left = wake - now_ns();
			timeout = left <= 0 ? 0 : left / MS >= INT_MAX ? INT_MAX : (int)((left + MS - 1) / MS);
		}
		int r = poll(pfd, (nfds_t)n, timeout);
		if (r < 0) {
			if (errno != EINTR)
				usleep(10000); /* ENOMEM: try again, the app runs on */
			continue;
		}
		int64_t now = now_ns();
		if (r > 0 && (pfd[at_sig].revents & POLLIN)) {
			struct signalfd_siginfo si;
			int exited = 0, status = 0;
			while (!exited && read(sfd, &si, sizeof si) == sizeof si) {
				if ((int)si.ssi_signo == SIGCHLD)
					exited = reap(&status);
				else
					kill(app_pid, (int)si.ssi_signo);
			}
			if (exited) {
				stop_proxy();
				finish_app_output();
				return status;
			}
		}
		if (at_app >= 0 && r > 0 && pfd[at_app].revents)
			copy_out(&app_out, &app_log);
		if (at_proxy >= 0 && r > 0 && pfd[at_proxy].revents)
			copy_out(&proxy_out, &proxy_log);
		if (at_check >= 0 && r > 0 && pfd[at_check].revents && round_.phase != IDLE)
			check_io(pfd[at_check].revents);
		now = now_ns();
		if (round_.phase != IDLE && now >= round_.deadline)
			check_timeout();
		if (retry_at && now >= retry_at) {
			retry_at = 0;
			if (dirty)
				write_state();
		}
		if (restart_at && now >= restart_at) {
			restart_at = 0;
			start_proxy();
			if (health) { /* checkSoon: rounds every 250 ms for 30 s or until one passes */
				soon_until = now + RESTART_ROUNDS_FOR;
				soon_at = now + RESTART_ROUND_EVERY;
			}
		}
		if (soon_at && now >= soon_at) {
			soon_at = now < soon_until ? now + RESTART_ROUND_EVERY : 0;
			kick();
		}
		if (health && next_round && now >= next_round) {
			/* A ticker: the next tick one interval on, a round at
			 * most at a time (a tick during one asks for one more). */
			next_round += cfg.health_interval;
			if (next_round <= now)
				next_round = now + cfg.health_interval;
			kick();
		}
		if (health && round_.phase == IDLE && kicked)
			start_round();
	}
}

int main(int argc, char **argv) {
	/* Descriptors 0-2 open, on /dev/null where closed: else the init's
	 * own would take those numbers and reach the app. */
	for (int fd = 0; fd < 3; fd++)
		if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) != fd)
			return APP_START_FAILED;
	if (argc > 1 && strcmp(argv[1], "exec-as") == 0)
		return exec_as_main(argc, argv);
	app_log.fd = -1;
	if (parse_args(argc, argv) != 0) {
		/* ReportBadFlags: stderr, and the app's log where the flags
		 * named one before the one that failed. */
		dprintf(2, "cellinit: %s\n", parse_err.p);
		if (cfg.app_log && *cfg.app_log && capped_open(&app_log, cfg.app_log, cfg.app_log_max) == 0) {
			struct buf b = {0};
			buf_printf(&b, "cellinit: %s\n", parse_err.p);
			capped_write(&app_log, b.p, b.len);
		}
		return BAD_FLAGS;
	}
	return run();
}
