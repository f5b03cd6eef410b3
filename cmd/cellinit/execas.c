/*
 * execas.c holds the exec-as steps cellinit (cellinit.c, which includes
 * this file) runs in each child it forks before it execs the app or the
 * proxy: exec_as. It was the separate cellinit-exec helper of the Go init
 * (issue 16), whose command line it keeps as `cellinit exec-as`, so that
 * the steps can be tested on their own:
 *
 *   cellinit exec-as [-user UID:GID] [-nofile SOFT:HARD] [-drop-caps]
 *                    [-home] [-dir DIR] [-env-fd N] -- COMMAND [ARG...]
 *
 * In this order: the file limit; HOME from the container's /etc/passwd
 * (runc's rule); no_new_privs; with -drop-caps an empty bounding set; the
 * user (setgroups(0), setresgid, setresuid); every capability set emptied
 * for -drop-caps or a non-root user; the working directory; COMMAND looked
 * up in the environment's PATH as Go's exec.LookPath does (as the target's
 * user, after setuid); exec with the environment it was given (its own,
 * or with -env-fd the NUL-terminated entries read from descriptor N),
 * duplicate names dropped after their first (as Go's os.Environ does). On
 * an error it writes the reason to descriptor 3 (the init reads it;
 * close-on-exec, so the init reads EOF on success) and to stderr, and
 * exits 127.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define ERR_FD 3
#define START_FAILED 127 /* cellinit.AppStartFailed */
#define PASSWD_MAX (1 << 20)
#define LINE_MAX_GO (64 * 1024) /* bufio.MaxScanTokenSize */
#define ENV_MAX (16 << 20)

extern char **environ;

/* errstr is Go's text for errno e: strerror's, first letter lower case. */
static const char *errstr(int e) {
	static char buf[128];
	snprintf(buf, sizeof buf, "%s", strerror(e));
	if (buf[0] >= 'A' && buf[0] <= 'Z' && !(buf[1] >= 'A' && buf[1] <= 'Z'))
		buf[0] = (char)(buf[0] - 'A' + 'a');
	return buf;
}

/* fail reports the error and ends the helper. */
static void fail(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void fail(const char *fmt, ...) {
	char msg[8192];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	size_t n = strlen(msg);
	while (n > 0) { /* best effort: fd 3 may be closed (run by hand) */
		ssize_t w = write(ERR_FD, msg + strlen(msg) - n, n);
		if (w <= 0)
			break;
		n -= (size_t)w;
	}
	dprintf(2, "cellinit: %s\n", msg);
	_exit(START_FAILED);
}

/* parse_u64 parses a whole decimal unsigned 64-bit number. */
static int parse_u64(const char *s, const char *end, uint64_t *out) {
	uint64_t v = 0;
	if (s == end)
		return -1;
	for (; s < end; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		unsigned d = (unsigned)(*s - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

/* pair parses "A:B" of two unsigned integers (cellinit's pair). */
static int pair(const char *s, uint64_t *a, uint64_t *b) {
	const char *colon = strchr(s, ':');
	if (colon == NULL)
		return -1;
	return parse_u64(s, colon, a) == 0 && parse_u64(colon + 1, s + strlen(s), b) == 0 ? 0 : -1;
}

/* home_of is runc's HOME for uid: the home field of the first
 * /etc/passwd entry with that uid, "/" without one; at most 1 MB of the
 * file, read line by line as bufio.Scanner does (a line of 64 KiB or more
 * ends the reading). */
static const char *home_of(const char *passwd, uint64_t uid) {
	static char buf[PASSWD_MAX + 1];
	static char home[LINE_MAX_GO];
	int fd = open(passwd, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return "/";
	size_t len = 0;
	while (len < PASSWD_MAX) {
		ssize_t r = read(fd, buf + len, PASSWD_MAX - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	close(fd);
	char want[32];
	snprintf(want, sizeof want, "%llu", (unsigned long long)uid);
	size_t wlen = strlen(want);
	for (size_t at = 0; at < len;) {
		char *line = buf + at;
		char *nl = memchr(line, '\n', len - at);
		size_t n = nl ? (size_t)(nl - line) : len - at;
		if (n >= LINE_MAX_GO)
			return "/";
		at += n + (nl ? 1 : 0);
		if (n > 0 && line[n - 1] == '\r')
			n--;
		/* name:passwd:uid:gid:gecos:home[:...] */
		const char *f[7];
		size_t flen[7];
		int nf = 0;
		const char *p = line, *end = line + n;
		while (nf < 7) {
			const char *c = memchr(p, ':', (size_t)(end - p));
			f[nf] = p;
			flen[nf] = c ? (size_t)(c - p) : (size_t)(end - p);
			nf++;
			if (!c)
				break;
			p = c + 1;
		}
		if (nf >= 6 && flen[2] == wlen && memcmp(f[2], want, wlen) == 0) {
			memcpy(home, f[5], flen[5]);
			home[flen[5]] = '\0';
			return home;
		}
	}
	return "/";
}

/* env_key_len answers the length of the name of s ("NAME=value"), or -1
 * for an entry without '='. */
static long env_key_len(const char *s) {
	const char *eq = strchr(s, '=');
	return eq ? eq - s : -1;
}

/* home_entry answers "HOME=" home. */
static char *home_entry(const char *home) {
	char *h = malloc(strlen(home) + 6);
	if (!h)
		fail("exec-as: %s", errstr(ENOMEM));
	strcpy(h, "HOME=");
	strcat(h, home);
	return h;
}

/* read_env answers the environment in fd: NUL-terminated entries to
 * EOF (the init writes the app's there, so that glibc's start-up code,
 * which reads GLIBC_TUNABLES and the like from the process environment
 * while the helper is still root, never sees the app's). */
static char **read_env(int fd) {
	size_t cap = 1 << 16, len = 0;
	char *buf = malloc(cap + 1);
	if (!buf)
		fail("exec-as: %s", errstr(ENOMEM));
	for (;;) {
		if (len == cap) {
			if (cap >= ENV_MAX)
				fail("exec-as: environment on descriptor %d: over %d bytes", fd, ENV_MAX);
			cap *= 2;
			buf = realloc(buf, cap + 1);
			if (!buf)
				fail("exec-as: %s", errstr(ENOMEM));
		}
		ssize_t r = read(fd, buf + len, cap - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			fail("exec-as: read the environment on descriptor %d: %s", fd, errstr(errno));
		if (r == 0)
			break;
		len += (size_t)r;
	}
	close(fd);
	buf[len] = '\0'; /* a last entry without its NUL */
	size_t n = 0;
	for (size_t i = 0; i < len; i++)
		n += buf[i] == '\0';
	char **env = calloc(n + 2, sizeof *env);
	if (!env)
		fail("exec-as: %s", errstr(ENOMEM));
	size_t m = 0;
	for (size_t at = 0; at < len; at += strlen(buf + at) + 1)
		env[m++] = buf + at;
	env[m] = NULL;
	return env;
}

/* build_env answers the environment to exec with: src without empty
 * entries and without a name's later values, HOME set to home (in its
 * first value's place, or appended) unless home is NULL. */
static char **build_env(char **src, const char *home) {
	size_t n = 0;
	while (src[n])
		n++;
	char **out = calloc(n + 2, sizeof *out);
	if (!out)
		fail("exec-as: %s", errstr(ENOMEM));
	size_t m = 0;
	int home_set = 0;
	for (size_t i = 0; i < n; i++) {
		const char *s = src[i];
		if (s[0] == '\0')
			continue;
		long k = env_key_len(s);
		int dup = 0;
		for (size_t j = 0; k >= 0 && j < m && !dup; j++)
			dup = env_key_len(out[j]) == k && strncmp(out[j], s, (size_t)k) == 0;
		if (dup)
			continue;
		if (home && k == 4 && strncmp(s, "HOME", 4) == 0) {
			out[m++] = home_entry(home);
			home_set = 1;
			continue;
		}
		out[m++] = (char *)s;
	}
	if (home && !home_set)
		out[m++] = home_entry(home);
	out[m] = NULL;
	return out;
}

/* env_get answers name's value in env (its only value: build_env dropped
 * the later ones), "" without one. */
static const char *env_get(char **env, const char *name) {
	size_t k = strlen(name);
	for (; *env; env++)
		if (strncmp(*env, name, k) == 0 && (*env)[k] == '=')
			return *env + k + 1;
	return "";
}

/* clean is Go's path.Clean of s, in place (the result is never longer). */
static void clean(char *s) {
	int rooted = s[0] == '/';
	char *w = s;          /* write position */
	const char *r = s;    /* read position */
	char *dotdot = s;     /* where ".." may no longer back up */
	if (rooted) {
		w++, r++;
		dotdot = w;
	}
	while (*r) {
		if (*r == '/') {
			r++;
		} else if (r[0] == '.' && (r[1] == '/' || r[1] == '\0')) {
			r++;
		} else if (r[0] == '.' && r[1] == '.' && (r[2] == '/' || r[2] == '\0')) {
			r += 2;
			if (w > dotdot) {
				w--;
				while (w > dotdot && *w != '/')
					w--;
			} else if (!rooted) {
				if (w > s)
					*w++ = '/';
				*w++ = '.', *w++ = '.';
				dotdot = w;
			}
		} else {
			if ((rooted && w != s + 1) || (!rooted && w != s))
				*w++ = '/';
			while (*r && *r != '/')
				*w++ = *r++;
		}
	}
	if (w == s)
		*w++ = '.';
	*w = '\0';
}

/* find_executable is Go's exec findExecutable: 0 or an errno, with *op
 * "stat" when stat failed. */
static int find_executable(const char *file, const char **op) {
	struct stat st;
	*op = NULL;
	if (stat(file, &st) != 0) {
		*op = "stat";
		return errno;
	}
	if (S_ISDIR(st.st_mode))
		return EISDIR;
	if (faccessat(AT_FDCWD, file, X_OK, AT_EACCESS) == 0)
		return 0;
	if (errno != ENOSYS && errno != EPERM)
		return errno;
	return (st.st_mode & 0111) ? 0 : EACCES;
}

/* look_path finds file as Go's exec.LookPath does, in env's PATH; it
 * fails the helper with LookPath's error, as ExecAs reports it. */
static char *look_path(const char *file, char **env) {
	const char *op;
	/* Go's validateLookPath: these never name a program. */
	if (strcmp(file, "") == 0 || strcmp(file, ".") == 0 || strcmp(file, "..") == 0)
		fail("start %s: exec: \"%s\": executable file not found in $PATH", file, file);
	if (strchr(file, '/')) {
		int e = find_executable(file, &op);
		if (e == 0)
			return (char *)file;
		if (op)
			fail("start %s: exec: \"%s\": %s %s: %s", file, file, op, file, errstr(e));
		fail("start %s: exec: \"%s\": %s", file, file, errstr(e));
	}
	/* filepath.SplitList: no entry for an empty PATH, "." for an empty
	 * entry (leading, trailing or between two colons). */
	const char *path = env_get(env, "PATH");
	size_t flen = strlen(file);
	for (const char *dirp = path; *path != '\0';) {
		const char *colon = strchr(dirp, ':');
		size_t dlen = colon ? (size_t)(colon - dirp) : strlen(dirp);
		char *p = malloc(dlen + flen + 3);
		if (!p)
			fail("exec-as: %s", errstr(ENOMEM));
		if (dlen == 0)
			strcpy(p, ".");
		else
			memcpy(p, dirp, dlen), p[dlen] = '\0';
		strcat(p, "/");
		strcat(p, file);
		clean(p); /* filepath.Join */
		if (find_executable(p, &op) == 0) {
			if (p[0] != '/')
				fail("start %s: exec: \"%s\": cannot run executable found relative to current directory", file, file);
			return p;
		}
		free(p);
		if (!colon)
			break;
		dirp = colon + 1;
	}
	fail("start %s: exec: \"%s\": executable file not found in $PATH", file, file);
	return NULL;
}

/* exec_as is the helper's work once its command line is read: in the
 * order the header says, the file limit (soft and hard, unless both are
 * 0), HOME (home), no_new_privs, the bounding set (drop_caps), the user
 * (user), the capability sets, the working directory (dir, unless NULL or
 * empty), then exec of target with env. It never returns: an error ends
 * the process through fail. */
static void exec_as(int user, uint64_t uid, uint64_t gid, int nofile, uint64_t soft, uint64_t hard, int drop_caps,
		    int home, const char *dir, char **src_env, char **target) __attribute__((noreturn));
static void exec_as(int user, uint64_t uid, uint64_t gid, int nofile, uint64_t soft, uint64_t hard, int drop_caps,
		    int home, const char *dir, char **src_env, char **target) {
	if (nofile && (soft != 0 || hard != 0)) {
		struct rlimit rl = {.rlim_cur = soft, .rlim_max = hard};
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			fail("set file limit %llu:%llu: %s", (unsigned long long)soft, (unsigned long long)hard, errstr(errno));
	}
	const char *home_dir = NULL;
	if (home)
		home_dir = home_of("/etc/passwd", user ? uid : (uint64_t)getuid());
	char **env = build_env(src_env, home_dir);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		fail("set no_new_privs: %s", errstr(errno));
	if (drop_caps) {
		for (int c = 0; c < 64; c++) {
			if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) == 0)
				continue;
			if (errno == EINVAL)
				break; /* past the kernel's last capability */
			fail("drop capability %d from the bounding set: %s", c, errstr(errno));
		}
	}
	if (user) {
		/* The raw system calls: glibc's wrappers would signal every
		 * thread, and there is only this one. */
		if (syscall(SYS_setgroups, 0, NULL) != 0)
			fail("setgroups: %s", errstr(errno));
		if (syscall(SYS_setresgid, (gid_t)gid, (gid_t)gid, (gid_t)gid) != 0)
			fail("setgid %llu: %s", (unsigned long long)gid, errstr(errno));
		if (syscall(SYS_setresuid, (uid_t)uid, (uid_t)uid, (uid_t)uid) != 0)
			fail("setuid %llu: %s", (unsigned long long)uid, errstr(errno));
	}
	if (drop_caps || getuid() != 0) {
		/* setuid away from 0 empties the permitted and effective sets but
		 * keeps the inheritable one; this empties them all (and the
		 * ambient set with them). */
		struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
		struct __user_cap_data_struct none[2];
		memset(none, 0, sizeof none);
		if (syscall(SYS_capset, &hdr, none) != 0)
			fail("clear capabilities: %s", errstr(errno));
	}
	if (dir && dir[0] != '\0' && chdir(dir) != 0)
		fail("chdir %s: %s", dir, errstr(errno));
	char *path = look_path(target[0], env);
	(void)fcntl(ERR_FD, F_SETFD, FD_CLOEXEC);
	execve(path, target, env);
	fail("exec %s: %s", path, errstr(errno));
}

/* next_flag reads argv[*i] as Go's flag package reads a flag: 0 with its
 * name (nlen bytes, its dashes dropped) and the text after its '=' (NULL
 * without one); 1 at the first argument that is no flag, *i then the
 * first operand (past a "--"); -1 for a malformed one ("---x", "-=x"). */
static int next_flag(int argc, char **argv, int *i, const char **name, size_t *nlen, const char **value) {
	if (*i >= argc)
		return 1;
	const char *a = argv[*i];
	if (a[0] != '-' || a[1] == '\0')
		return 1;
	if (strcmp(a, "--") == 0) {
		(*i)++;
		return 1;
	}
	*name = a + (a[1] == '-' ? 2 : 1);
	if ((*name)[0] == '\0' || (*name)[0] == '-' || (*name)[0] == '=')
		return -1;
	*value = strchr(*name, '=');
	*nlen = *value ? (size_t)(*value - *name) : strlen(*name);
	if (*value)
		(*value)++;
	return 0;
}

/* exec_as_main is `cellinit exec-as ...` (cellinit.c's main calls it). */
static int exec_as_main(int argc, char **argv) {
	const char *user = NULL, *nofile = NULL, *dir = NULL;
	int drop_caps = 0, home = 0, env_fd = -1;
	uint64_t uid = 0, gid = 0, soft = 0, hard = 0;

	if (argc < 2 || strcmp(argv[1], "exec-as") != 0)
		fail("exec-as: usage: %s exec-as [-user UID:GID] [-nofile SOFT:HARD] [-drop-caps] [-home] [-dir DIR] [-env-fd N] -- COMMAND [ARG...]",
		     argc > 0 ? argv[0] : "cellinit");
	int i = 2;
	const char *name, *value;
	size_t nlen;
	for (int r; (r = next_flag(argc, argv, &i, &name, &nlen, &value)) != 1; i++) {
		if (r < 0)
			fail("exec-as: bad flag syntax: %s", argv[i]);
#define IS(s) (nlen == strlen(s) && strncmp(name, s, nlen) == 0)
		if (IS("drop-caps") || IS("home")) {
			int on = 1;
			if (value && (strcmp(value, "true") == 0 || strcmp(value, "1") == 0))
				on = 1;
			else if (value && (strcmp(value, "false") == 0 || strcmp(value, "0") == 0))
				on = 0;
			else if (value)
				fail("exec-as: invalid boolean value \"%s\" for -%.*s", value, (int)nlen, name);
			if (IS("home"))
				home = on;
			else
				drop_caps = on;
			continue;
		}
		if (!IS("user") && !IS("nofile") && !IS("dir") && !IS("env-fd"))
			fail("exec-as: flag provided but not defined: -%.*s", (int)nlen, name);
		if (!value) {
			if (i + 1 >= argc)
				fail("exec-as: flag needs an argument: -%.*s", (int)nlen, name);
			value = argv[++i];
		}
		if (IS("user")) {
			/* (uid_t)-1 is "unchanged" to setresuid and setresgid: the
			 * target would keep root's. */
			if (pair(value, &uid, &gid) != 0 || uid >= UINT32_MAX || gid >= UINT32_MAX)
				fail("exec-as: invalid value \"%s\" for flag -user", value);
			user = value;
		} else if (IS("nofile")) {
			if (pair(value, &soft, &hard) != 0)
				fail("exec-as: invalid value \"%s\" for flag -nofile", value);
			nofile = value;
		} else if (IS("env-fd")) {
			uint64_t fd;
			if (parse_u64(value, value + strlen(value), &fd) != 0 || fd < 3 || fd == ERR_FD || fd > INT32_MAX)
				fail("exec-as: invalid value \"%s\" for flag -env-fd", value);
			env_fd = (int)fd;
		} else {
			dir = value;
		}
#undef IS
	}
	if (i >= argc)
		fail("exec-as: no command");
	char **target = argv + i;
	exec_as(user != NULL, uid, gid, nofile != NULL, soft, hard, drop_caps, home, dir,
		env_fd >= 0 ? read_env(env_fd) : environ, target);
}
