/* Process driver: web application instances as child processes, capped
 * through the cgroup cpu controller.
 *
 * Each instance gets its own cgroup "<root>/<id>" so its cap and CPU time are
 * its own. v2 (cpu.max) is preferred; v1 (cpu.cfs_quota_us) otherwise; when
 * neither hierarchy is writable the driver says "uncapped" and a cap request
 * fails with -WLM_EUNSUPPORTED rather than pretending. CPU time comes from
 * the same cgroup (v2 cpu.stat, v1 cpuacct.usage) when there is one.
 *
 * Least privilege: an instance runs as its own user (setgid/setuid with the
 * supplementary groups dropped), with no_new_privs, in a private working
 * directory, with only fds 0-2 open. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "nodeagent.h"

extern char **environ;

struct pr_inst {
    char id[128];
    pid_t pid; /* 0 once gone (adopt found it dead) */
    int paused;
    int adopted; /* started by an earlier run of the agent: not our child */
    double cap_mhz;
    unsigned long long start_ticks;
    char line[1024]; /* the shell line run */
    char user[64];
    int reaped, status; /* ended: exit code, or 128 + signal */
};

struct pr_driver {
    struct nodeagent_driver base;
    pthread_mutex_t mu;
    struct pr_inst *inst;
    size_t n;
    char cg_root[512];   /* "" when uncapped */
    char acct_root[512]; /* cgroup with CPU accounting ("" = none; v2: cg_root) */
    const char *mode;    /* "v2", "v1", "uncapped" */
    int mhz;
};

static struct pr_driver *PR(struct nodeagent_driver *d)
{
    return (struct pr_driver *)d;
}

static int write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t w = write(fd, text, strlen(text));
    int e = errno;
    close(fd);
    return w < 0 ? -e : 0;
}

static int try_root(struct pr_driver *d, const char *base, const char *name, const char *probe)
{
    char dir[512], f[600];
    snprintf(dir, sizeof(dir), "%s/%s", base, name);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return -1;
    snprintf(f, sizeof(f), "%s/%s", dir, probe);
    if (access(f, W_OK) != 0)
        return -1;
    wlm_strlcpy(d->cg_root, dir, sizeof(d->cg_root));
    return 0;
}

static void detect_cgroup(struct pr_driver *d, const char *name)
{
    d->mode = "uncapped";
    /* v2 unified at /sys/fs/cgroup with the cpu controller delegated. */
    FILE *f = fopen("/sys/fs/cgroup/cgroup.controllers", "r");
    char line[256] = "";
    if (f) {
        if (!fgets(line, sizeof(line), f))
            line[0] = '\0';
        fclose(f);
        if (strstr(line, "cpu")) {
            write_file("/sys/fs/cgroup/cgroup.subtree_control", "+cpu");
            if (try_root(d, "/sys/fs/cgroup", name, "cgroup.procs") == 0) {
                char sc[600];
                snprintf(sc, sizeof(sc), "%s/cgroup.subtree_control", d->cg_root);
                write_file(sc, "+cpu");
                d->mode = "v2";
                return;
            }
        }
    }
    if (try_root(d, "/sys/fs/cgroup/cpu", name, "cpu.cfs_quota_us") == 0 ||
        try_root(d, "/sys/fs/cgroup/cpu,cpuacct", name, "cpu.cfs_quota_us") == 0) {
        d->mode = "v1";
        return;
    }
    d->cg_root[0] = '\0';
}

/* v1 CPU accounting lives in the cpuacct hierarchy, which may be mounted
 * apart from cpu; v2 has it in cpu.stat of the same cgroup. */
static void detect_acct(struct pr_driver *d, const char *name)
{
    d->acct_root[0] = '\0';
    if (!strcmp(d->mode, "v2")) {
        wlm_strlcpy(d->acct_root, d->cg_root, sizeof(d->acct_root));
        return;
    }
    char keep[512];
    wlm_strlcpy(keep, d->cg_root, sizeof(keep));
    if (try_root(d, "/sys/fs/cgroup/cpuacct", name, "cpuacct.usage") == 0 ||
        try_root(d, "/sys/fs/cgroup/cpu,cpuacct", name, "cpuacct.usage") == 0)
        wlm_strlcpy(d->acct_root, d->cg_root, sizeof(d->acct_root));
    wlm_strlcpy(d->cg_root, keep, sizeof(d->cg_root));
}

/* Cumulative CPU seconds of an instance's cgroup; -1 when unreadable. */
static double cgroup_cpu_seconds(struct pr_driver *d, const char *id)
{
    if (!d->acct_root[0])
        return -1;
    char path[800];
    int v2 = !strcmp(d->mode, "v2");
    snprintf(path, sizeof(path), "%s/%s/%s", d->acct_root, id, v2 ? "cpu.stat" : "cpuacct.usage");
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    double out = -1;
    char line[128];
    while (fgets(line, sizeof(line), f)) {
        unsigned long long v;
        if (v2 && sscanf(line, "usage_usec %llu", &v) == 1) {
            out = (double)v / 1e6;
            break;
        }
        if (!v2 && sscanf(line, "%llu", &v) == 1) {
            out = (double)v / 1e9;
            break;
        }
    }
    fclose(f);
    return out;
}

static struct pr_inst *find(struct pr_driver *d, const char *id)
{
    for (size_t i = 0; i < d->n; i++)
        if (!strcmp(d->inst[i].id, id))
            return &d->inst[i];
    return NULL;
}

/* The instance's entry, a new one at the end if it has none (NULL when out
 * of memory); the caller holds d->mu and fills it. */
static struct pr_inst *find_or_add(struct pr_driver *d, const char *id)
{
    struct pr_inst *in = find(d, id);
    if (!in) {
        struct pr_inst *arr = realloc(d->inst, (d->n + 1) * sizeof(*arr));
        if (arr) {
            d->inst = arr;
            in = &d->inst[d->n++];
        }
    }
    return in;
}

static int pr_node_info(struct nodeagent_driver *dd, struct nodeagent_node_info *out,
                        struct wlm_error *err)
{
    (void)dd;
    return nodeagent_proc_node_info(out, err);
}

static int set_cap(struct pr_driver *d, const char *id, double mhz, struct wlm_error *err)
{
    if (!d->cg_root[0])
        return wlm_error_set(err, WLM_EUNSUPPORTED,
                             "cap %s: uncapped (no writable cgroup cpu controller)", id);
    char path[700], val[64];
    long long period = 100000;
    long long quota = mhz > 0 && d->mhz > 0 ? (long long)(mhz / d->mhz * period) : -1;
    if (quota > 0 && quota < 1000)
        quota = 1000;
    int r;
    if (!strcmp(d->mode, "v2")) {
        snprintf(path, sizeof(path), "%s/%s/cpu.max", d->cg_root, id);
        if (quota > 0)
            snprintf(val, sizeof(val), "%lld %lld", quota, period);
        else
            snprintf(val, sizeof(val), "max %lld", period);
        r = write_file(path, val);
    } else {
        snprintf(path, sizeof(path), "%s/%s/cpu.cfs_period_us", d->cg_root, id);
        snprintf(val, sizeof(val), "%lld", period);
        write_file(path, val);
        snprintf(path, sizeof(path), "%s/%s/cpu.cfs_quota_us", d->cg_root, id);
        snprintf(val, sizeof(val), "%lld", quota);
        r = write_file(path, val);
    }
    if (r < 0)
        return wlm_error_set(err, -r, "cap %s: cannot write %s: %s", id, path, strerror(-r));
    return 0;
}

/* Who the instance runs as. NULL user = the agent's own identity. */
struct run_as {
    int set;
    uid_t uid;
    gid_t gid;
    char name[64];
};

static int resolve_user(const char *user, struct run_as *ra, struct wlm_error *err)
{
    memset(ra, 0, sizeof(*ra));
    if (!user || !*user)
        return 0;
    struct passwd pw, *res = NULL;
    char buf[4096];
    if (getpwnam_r(user, &pw, buf, sizeof(buf), &res) != 0 || !res)
        return wlm_error_setf(err, WLM_EINVAL, "user",
                              "user '%s' does not exist on this node (scripts/install-deps "
                              "creates the default wlm-app user)",
                              user);
    if (geteuid() != 0 && pw.pw_uid != geteuid())
        return wlm_error_setf(err, WLM_EINVAL, "user",
                              "cannot run an instance as '%s': the agent is not root", user);
    ra->set = geteuid() == 0;
    ra->uid = pw.pw_uid;
    ra->gid = pw.pw_gid;
    wlm_strlcpy(ra->name, user, sizeof(ra->name));
    return 0;
}

/* The private working directory: owned by the instance's user, 0700, not
 * a symlink. */
static int make_workdir(const char *dir, const struct run_as *ra, struct wlm_error *err)
{
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return wlm_error_set(err, errno, "cannot create %s: %s", dir, strerror(errno));
    struct stat sb;
    if (lstat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return wlm_error_set(err, WLM_EIO, "%s is not a directory", dir);
    if (ra->set && (chown(dir, ra->uid, ra->gid) != 0 || chmod(dir, 0700) != 0))
        return wlm_error_set(err, errno, "cannot hand %s to user %s: %s", dir, ra->name,
                             strerror(errno));
    return 0;
}

/* In the child after fork(): report what failed (with errno, only
 * async-signal-safe calls) through the pipe and exit. */
static void child_fail(int fd, const char *what)
{
    int e = errno;
    char msg[160];
    size_t n = strlen(what);
    if (n > 120)
        n = 120;
    memcpy(msg, what, n);
    memcpy(msg + n, " (errno ", 8);
    n += 8;
    char digits[12];
    int k = 0;
    do
        digits[k++] = (char)('0' + e % 10);
    while ((e /= 10) > 0 && k < 11);
    while (k > 0)
        msg[n++] = digits[--k];
    msg[n++] = ')';
    if (write(fd, msg, n) < 0) {
    }
    _exit(126);
}

static int pr_start(struct nodeagent_driver *dd, const struct nodeagent_spec *s,
                    struct wlm_error *err)
{
    struct pr_driver *d = PR(dd);
    if (!s->command || !*s->command)
        return wlm_error_setf(err, WLM_EINVAL, "command", "a process needs a command");
    pthread_mutex_lock(&d->mu);
    struct pr_inst *old = find(d, s->id);
    if (old && old->pid > 0 && kill(old->pid, 0) == 0) {
        pthread_mutex_unlock(&d->mu);
        return wlm_error_set(err, WLM_ECONFLICT, "instance '%s' is already running (pid %d)", s->id,
                             (int)old->pid);
    }
    pthread_mutex_unlock(&d->mu);
    struct run_as ra;
    if (resolve_user(s->user, &ra, err) < 0)
        return err->code;
    if (s->workdir && *s->workdir && make_workdir(s->workdir, &ra, err) < 0)
        return err->code;
    /* {port} in the command is replaced by the port; $PORT is set too. */
    /* A simple command is exec'd by the shell, so the pid we watch (CPU
     * time, signals) is the application's own, not a waiting shell's. */
    struct wlm_buf cmd;
    wlm_buf_init(&cmd);
    if (!strpbrk(s->command, ";&|`$()<>\n"))
        wlm_buf_printf(&cmd, "exec ");
    for (const char *p = s->command; *p; p++) {
        if (!strncmp(p, "{port}", 6)) {
            wlm_buf_printf(&cmd, "%d", s->port);
            p += 5;
        } else {
            wlm_buf_append(&cmd, p, 1);
        }
    }
    char *line = wlm_buf_steal(&cmd);
    char cgdir[700] = "", procs[800] = "", tasks[800] = "", acct[800] = "";
    if (d->cg_root[0]) {
        snprintf(cgdir, sizeof(cgdir), "%s/%s", d->cg_root, s->id);
        mkdir(cgdir, 0755);
        snprintf(procs, sizeof(procs), "%s/cgroup.procs", cgdir);
        snprintf(tasks, sizeof(tasks), "%s/tasks", cgdir);
    }
    if (d->acct_root[0] && strcmp(d->acct_root, d->cg_root)) {
        char adir[700];
        snprintf(adir, sizeof(adir), "%s/%s", d->acct_root, s->id);
        mkdir(adir, 0755);
        snprintf(acct, sizeof(acct), "%s/cgroup.procs", adir);
    }
    /* Everything the child needs is prepared here: after fork() in a
     * threaded process only async-signal-safe calls are allowed. */
    char port_env[32], inst_env[160], home_env[600] = "", user_env[96] = "", logname_env[96] = "";
    snprintf(port_env, sizeof(port_env), "PORT=%d", s->port);
    snprintf(inst_env, sizeof(inst_env), "WLM_INSTANCE=%s", s->id);
    if (s->workdir && *s->workdir)
        snprintf(home_env, sizeof(home_env), "HOME=%s", s->workdir);
    if (ra.set) {
        snprintf(user_env, sizeof(user_env), "USER=%s", ra.name);
        snprintf(logname_env, sizeof(logname_env), "LOGNAME=%s", ra.name);
    }
    size_t nenv = 0;
    while (environ[nenv])
        nenv++;
    char **envp = calloc(nenv + 8, sizeof(char *));
    if (!envp) {
        free(line);
        return wlm_error_set(err, ENOMEM, "out of memory");
    }
    size_t k = 0;
    for (size_t i = 0; i < nenv; i++) {
        const char *e = environ[i];
        /* The agent's secrets and identity stay with the agent. */
        if (!strncmp(e, "PORT=", 5) || !strncmp(e, "WLM_", 4) ||
            (home_env[0] && !strncmp(e, "HOME=", 5)) ||
            (ra.set && (!strncmp(e, "USER=", 5) || !strncmp(e, "LOGNAME=", 8))))
            continue;
        envp[k++] = environ[i];
    }
    envp[k++] = port_env;
    envp[k++] = inst_env;
    if (home_env[0])
        envp[k++] = home_env;
    if (user_env[0]) {
        envp[k++] = user_env;
        envp[k++] = logname_env;
    }
    envp[k] = NULL;
    const char *out = s->console && *s->console ? s->console : "/dev/null";
    const char *wd = s->workdir && *s->workdir ? s->workdir : NULL;
    char *const argv[] = {"sh", "-c", line, NULL};
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0) {
        int e = errno;
        free(line);
        free(envp);
        return wlm_error_set(err, e, "pipe: %s", strerror(e));
    }
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(pfd[0]);
        close(pfd[1]);
        free(line);
        free(envp);
        return wlm_error_set(err, e, "fork: %s", strerror(e));
    }
    if (pid == 0) {
        close(pfd[0]);
        setsid();
        /* Writing "0" moves the writing process itself. */
        if (procs[0] && write_file(procs, "0") < 0)
            write_file(tasks, "0");
        if (acct[0])
            write_file(acct, "0");
        if (ra.set) {
            if (setgroups(0, NULL) != 0)
                child_fail(pfd[1], "setgroups");
            if (setgid(ra.gid) != 0)
                child_fail(pfd[1], "setgid");
            if (setuid(ra.uid) != 0)
                child_fail(pfd[1], "setuid");
        }
        /* As the user: its working directory must be reachable by it. */
        if (wd && chdir(wd) != 0)
            child_fail(pfd[1], "cannot enter its working directory");
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
            child_fail(pfd[1], "no_new_privs");
        umask(077);
        /* Opened as the instance's user: it can only write where it may. */
        int fd = open(out, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
            child_fail(pfd[1], "open the output log");
        int nul = open("/dev/null", O_RDONLY);
        if (nul >= 0 && nul != 0) {
            dup2(nul, 0);
            close(nul);
        }
        dup2(fd, 1);
        dup2(fd, 2);
        /* Nothing of the agent's (its database, sockets) stays open. */
        if ((pfd[1] > 3 && syscall(SYS_close_range, 3, pfd[1] - 1, 0) != 0) ||
            syscall(SYS_close_range, pfd[1] + 1, ~0U, 0) != 0)
            for (int i = 3; i < 4096; i++)
                if (i != pfd[1])
                    close(i);
        execve("/bin/sh", argv, envp);
        child_fail(pfd[1], "exec /bin/sh");
    }
    close(pfd[1]);
    free(envp);
    char msg[200];
    ssize_t got;
    do
        got = read(pfd[0], msg, sizeof(msg) - 1);
    while (got < 0 && errno == EINTR);
    close(pfd[0]);
    if (got > 0) {
        msg[got] = '\0';
        waitpid(pid, NULL, 0);
        wlm_error_set(err, WLM_EIO, "instance %s did not start%s%s (working directory %s): %s",
                      s->id, ra.set ? " as user " : "", ra.set ? ra.name : "", wd ? wd : "none",
                      msg);
        free(line);
        return err->code;
    }
    unsigned long long st = 0;
    nodeagent_proc_start_ticks(pid, &st);
    pthread_mutex_lock(&d->mu);
    struct pr_inst *in = find_or_add(d, s->id);
    if (in) {
        memset(in, 0, sizeof(*in));
        wlm_strlcpy(in->id, s->id, sizeof(in->id));
        in->pid = pid;
        in->start_ticks = st;
        wlm_strlcpy(in->line, line, sizeof(in->line));
        wlm_strlcpy(in->user, ra.set ? ra.name : "", sizeof(in->user));
    }
    pthread_mutex_unlock(&d->mu);
    free(line);
    return 0;
}

/* The instance's pid while it is still that process: 0 once reaped, or
 * when the pid now belongs to another process (an adopted instance that
 * ended; pids are reused), so nothing is ever signalled by a stale pid.
 * Called with d->mu held. */
static pid_t live_pid(const struct pr_inst *in)
{
    if (!in || in->pid <= 0 || in->reaped)
        return 0;
    unsigned long long st = 0;
    if (in->start_ticks && (nodeagent_proc_start_ticks(in->pid, &st) < 0 || st != in->start_ticks))
        return 0;
    return in->pid;
}

static pid_t pid_of(struct pr_driver *d, const char *id, struct wlm_error *err)
{
    pthread_mutex_lock(&d->mu);
    struct pr_inst *in = find(d, id);
    pid_t pid = live_pid(in);
    pthread_mutex_unlock(&d->mu);
    if (!pid)
        wlm_error_set(err, WLM_ENOTFOUND, in ? "instance '%s' has ended" : "unknown instance '%s'",
                      id);
    return pid;
}

static int pr_signal(struct nodeagent_driver *dd, const char *id, int sig, struct wlm_error *err)
{
    pid_t pid = pid_of(PR(dd), id, err);
    if (!pid)
        return -WLM_ENOTFOUND;
    if (kill(-pid, sig) != 0 && kill(pid, sig) != 0)
        return wlm_error_set(err, errno, "signal %s: %s", id, strerror(errno));
    return 0;
}

static int pr_pause(struct nodeagent_driver *d, const char *id, struct wlm_error *err)
{
    return pr_signal(d, id, SIGSTOP, err);
}

static int pr_resume(struct nodeagent_driver *d, const char *id, struct wlm_error *err)
{
    return pr_signal(d, id, SIGCONT, err);
}

static int pr_suspend(struct nodeagent_driver *d, const char *id, const char *path,
                      struct wlm_error *err)
{
    (void)d;
    (void)path;
    return wlm_error_set(err, WLM_EUNSUPPORTED, "suspend %s: processes cannot be saved", id);
}

static int pr_restore(struct nodeagent_driver *d, const char *id, const char *path,
                      const char *console, struct wlm_error *err)
{
    (void)d;
    (void)path;
    (void)console;
    return wlm_error_set(err, WLM_EUNSUPPORTED, "restore %s: processes cannot be restored", id);
}

static int pr_migrate(struct nodeagent_driver *d, const char *id, const char *uri,
                      struct nodeagent_migrate_stats *st, struct wlm_error *err)
{
    (void)st;
    (void)d;
    (void)uri;
    return wlm_error_set(err, WLM_EUNSUPPORTED, "migrate %s: processes cannot migrate", id);
}

static int pr_resize(struct nodeagent_driver *dd, const char *id, const struct nodeagent_resize *r,
                     struct wlm_error *err)
{
    struct pr_driver *d = PR(dd);
    if (!pid_of(d, id, err))
        return -WLM_ENOTFOUND;
    if (r->vcpus > 0 || (r->pin && *r->pin))
        return wlm_error_set(err, WLM_EUNSUPPORTED, "resize %s: processes have no vCPUs to set",
                             id);
    int rc = set_cap(d, id, r->cpu_cap_mhz, err);
    if (rc == 0) {
        pthread_mutex_lock(&d->mu);
        struct pr_inst *in = find(d, id);
        if (in)
            in->cap_mhz = r->cpu_cap_mhz;
        pthread_mutex_unlock(&d->mu);
    }
    return rc;
}

/* Reap a child without blocking the caller for long: SIGTERM, wait up to
 * 2 s, then SIGKILL. */
static void reap(pid_t pid, int force)
{
    kill(-pid, SIGCONT);
    kill(-pid, force ? SIGKILL : SIGTERM);
    for (int i = 0; i < 200; i++) {
        if (waitpid(pid, NULL, WNOHANG) == pid || (kill(pid, 0) != 0 && errno == ESRCH))
            return;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    kill(-pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

static void rm_cgroups(struct pr_driver *d, const char *id)
{
    char dir[700];
    if (d->cg_root[0]) {
        snprintf(dir, sizeof(dir), "%s/%s", d->cg_root, id);
        rmdir(dir);
    }
    if (d->acct_root[0] && strcmp(d->acct_root, d->cg_root)) {
        snprintf(dir, sizeof(dir), "%s/%s", d->acct_root, id);
        rmdir(dir);
    }
}

static int pr_stop(struct nodeagent_driver *dd, const char *id, int force, struct wlm_error *err)
{
    struct pr_driver *d = PR(dd);
    pthread_mutex_lock(&d->mu);
    struct pr_inst *in = find(d, id);
    pid_t pid = live_pid(in);
    int known = in != NULL;
    pthread_mutex_unlock(&d->mu);
    if (!known)
        return wlm_error_set(err, WLM_ENOTFOUND, "unknown instance '%s'", id);
    if (pid > 0)
        reap(pid, force);
    pthread_mutex_lock(&d->mu);
    in = find(d, id);
    if (in) {
        *in = d->inst[d->n - 1];
        d->n--;
    }
    pthread_mutex_unlock(&d->mu);
    rm_cgroups(d, id);
    return 0;
}

static int pr_destroy(struct nodeagent_driver *dd, const char *id, struct wlm_error *err)
{
    struct wlm_error e2 = {0};
    int r = pr_stop(dd, id, 1, &e2);
    if (r == -WLM_ENOTFOUND)
        return 0;
    if (r < 0 && err)
        *err = e2;
    return r;
}

static void fill(struct pr_driver *d, struct pr_inst *in, struct nodeagent_wl_info *out)
{
    memset(out, 0, sizeof(*out));
    wlm_strlcpy(out->id, in->id, sizeof(out->id));
    out->pid = in->pid;
    out->cpu_shares = -1;
    out->vcpu_quota_us = -1;
    out->start_ticks = in->start_ticks;
    out->exit_status = -1;
    /* Reap a child that exited so it shows as shut off, not a zombie, and
     * keep how it ended for the controller. */
    int wst = 0;
    if (in->pid > 0 && !in->adopted && !in->reaped && waitpid(in->pid, &wst, WNOHANG) == in->pid) {
        in->reaped = 1;
        in->status = WIFEXITED(wst) ? WEXITSTATUS(wst) : 128 + WTERMSIG(wst);
    }
    if (in->pid <= 0 || in->reaped) {
        out->state = NODEAGENT_WL_SHUTOFF;
        out->exit_status = in->status;
        return;
    }
    struct nodeagent_proc_usage u;
    if (nodeagent_proc_session_usage(in->pid, &u) < 0 || u.state == 'Z' ||
        (in->start_ticks && u.start_ticks != in->start_ticks)) {
        out->state = NODEAGENT_WL_SHUTOFF; /* gone, or the pid was reused */
        return;
    }
    out->state = u.state == 'T' ? NODEAGENT_WL_PAUSED : NODEAGENT_WL_RUNNING;
    out->memory_kb = u.rss_kb;
    out->cpu_wait_seconds = u.wait_seconds;
    double cg = cgroup_cpu_seconds(d, in->id);
    out->cpu_seconds = cg >= 0 ? cg : u.cpu_seconds;
    out->cpu_source = cg >= 0 ? "cgroup" : "proc";
    if (d->cg_root[0]) {
        char path[800], buf[64] = "";
        snprintf(path, sizeof(path), "%s/%s/%s", d->cg_root, in->id,
                 !strcmp(d->mode, "v2") ? "cpu.max" : "cpu.cfs_quota_us");
        FILE *f = fopen(path, "r");
        if (f) {
            if (fgets(buf, sizeof(buf), f)) {
                long long q = -1, per = 100000;
                if (!strcmp(d->mode, "v2")) {
                    if (strncmp(buf, "max", 3) != 0)
                        sscanf(buf, "%lld %lld", &q, &per);
                } else {
                    sscanf(buf, "%lld", &q);
                }
                out->vcpu_quota_us = q;
                out->period_us = per;
            }
            fclose(f);
        }
    }
}

static int pr_info(struct nodeagent_driver *dd, const char *id, struct nodeagent_wl_info *out,
                   struct wlm_error *err)
{
    struct pr_driver *d = PR(dd);
    pthread_mutex_lock(&d->mu);
    struct pr_inst *in = find(d, id);
    if (in)
        fill(d, in, out);
    pthread_mutex_unlock(&d->mu);
    return in ? 0 : wlm_error_set(err, WLM_ENOTFOUND, "unknown instance '%s'", id);
}

static int pr_list(struct nodeagent_driver *dd, struct nodeagent_wl_info **out, size_t *n,
                   struct wlm_error *err)
{
    struct pr_driver *d = PR(dd);
    pthread_mutex_lock(&d->mu);
    struct nodeagent_wl_info *arr = calloc(d->n + 1, sizeof(*arr));
    if (arr)
        for (size_t i = 0; i < d->n; i++)
            fill(d, &d->inst[i], &arr[i]);
    *n = d->n;
    pthread_mutex_unlock(&d->mu);
    if (!arr)
        return wlm_error_set(err, ENOMEM, "out of memory");
    *out = arr;
    return 0;
}

static void pr_free(struct nodeagent_driver *dd)
{
    struct pr_driver *d = PR(dd);
    if (!d)
        return;
    /* Instances are the agent's children: stop them with the agent. */
    while (d->n > 0) {
        char id[128];
        wlm_strlcpy(id, d->inst[0].id, sizeof(id));
        pr_stop(dd, id, 0, NULL);
    }
    if (d->cg_root[0])
        rmdir(d->cg_root); /* only succeeds when empty, which it is now */
    if (d->acct_root[0] && strcmp(d->acct_root, d->cg_root))
        rmdir(d->acct_root);
    free(d->inst);
    pthread_mutex_destroy(&d->mu);
    free(d);
}

static const struct nodeagent_driver_ops pr_ops = {
    .name = "process",
    .node_info = pr_node_info,
    .start = pr_start,
    .pause = pr_pause,
    .resume = pr_resume,
    .suspend = pr_suspend,
    .restore = pr_restore,
    .migrate = pr_migrate,
    .resize = pr_resize,
    .stop = pr_stop,
    .destroy = pr_destroy,
    .info = pr_info,
    .list = pr_list,
    .free = pr_free,
};

struct nodeagent_driver *nodeagent_process_new(const char *cgroup_name, int node_mhz,
                                               struct wlm_error *err)
{
    if (cgroup_name && (strchr(cgroup_name, '/') || cgroup_name[0] == '.')) {
        wlm_error_setf(err, WLM_EINVAL, "cgroup",
                       "--cgroup '%s': one directory name under the cgroup hierarchies (no '/', "
                       "not starting with '.')",
                       cgroup_name);
        return NULL;
    }
    struct pr_driver *d = calloc(1, sizeof(*d));
    if (!d) {
        wlm_error_set(err, ENOMEM, "out of memory");
        return NULL;
    }
    d->base.ops = &pr_ops;
    d->mhz = node_mhz;
    pthread_mutex_init(&d->mu, NULL);
    detect_cgroup(d, cgroup_name && *cgroup_name ? cgroup_name : "wlm");
    detect_acct(d, cgroup_name && *cgroup_name ? cgroup_name : "wlm");
    return &d->base;
}

const char *nodeagent_process_cap_mode(struct nodeagent_driver *d)
{
    return d && d->ops == &pr_ops ? PR(d)->mode : "uncapped";
}

int nodeagent_process_identity(struct nodeagent_driver *dd, const char *id,
                               struct nodeagent_inst_rec *rec, struct wlm_error *err)
{
    if (!dd || dd->ops != &pr_ops)
        return wlm_error_set(err, WLM_EINVAL, "not a process driver");
    struct pr_driver *d = PR(dd);
    pthread_mutex_lock(&d->mu);
    struct pr_inst *in = find(d, id);
    if (in) {
        wlm_strlcpy(rec->id, in->id, sizeof(rec->id));
        rec->pid = in->pid;
        rec->start_ticks = in->start_ticks;
        wlm_strlcpy(rec->command, in->line, sizeof(rec->command));
        wlm_strlcpy(rec->user, in->user, sizeof(rec->user));
        rec->cap_mhz = in->cap_mhz;
    }
    pthread_mutex_unlock(&d->mu);
    return in ? 0 : wlm_error_set(err, WLM_ENOTFOUND, "unknown instance '%s'", id);
}

int nodeagent_process_adopt(struct nodeagent_driver *dd, const struct nodeagent_inst_rec *rec,
                            struct wlm_error *err)
{
    if (!dd || dd->ops != &pr_ops)
        return wlm_error_set(err, WLM_EINVAL, "not a process driver");
    struct pr_driver *d = PR(dd);
    char why[400];
    int alive = nodeagent_proc_check(rec->pid, rec->start_ticks, rec->id, rec->command, why,
                                     sizeof(why)) == 0;
    pthread_mutex_lock(&d->mu);
    struct pr_inst *in = find_or_add(d, rec->id);
    if (in) {
        memset(in, 0, sizeof(*in));
        wlm_strlcpy(in->id, rec->id, sizeof(in->id));
        in->pid = alive ? (pid_t)rec->pid : 0;
        in->adopted = 1;
        in->start_ticks = rec->start_ticks;
        in->cap_mhz = rec->cap_mhz;
        wlm_strlcpy(in->line, rec->command, sizeof(in->line));
        wlm_strlcpy(in->user, rec->user, sizeof(in->user));
    }
    pthread_mutex_unlock(&d->mu);
    if (!in)
        return wlm_error_set(err, ENOMEM, "out of memory");
    if (!alive) {
        rm_cgroups(d, rec->id);
        return wlm_error_set(err, WLM_ENOTFOUND, "instance %s: %s", rec->id, why);
    }
    return 0;
}

int nodeagent_process_remove_workdir(const char *dir, const char *user, struct wlm_error *err)
{
    struct run_as ra;
    if (resolve_user(user, &ra, err) < 0)
        return err->code;
    /* The directory is the instance's: empty it as its user, so a link it
     * left behind can never make root delete anything else; then the
     * (root-owned parent's) entry goes as root. */
    pid_t pid = fork();
    if (pid < 0)
        return wlm_error_set(err, errno, "fork: %s", strerror(errno));
    if (pid == 0) {
        if (ra.set && (setgroups(0, NULL) != 0 || setgid(ra.gid) != 0 || setuid(ra.uid) != 0))
            _exit(126);
        char *const argv[] = {"sh", "-c", "rm -rf -- \"$0\"/* \"$0\"/.[!.]* \"$0\"/..?*",
                              (char *)dir, NULL};
        char *const envp[] = {"PATH=/usr/bin:/bin", NULL};
        execve("/bin/sh", argv, envp);
        _exit(127);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    if (rmdir(dir) != 0 && errno != ENOENT)
        return wlm_error_set(err, errno, "cannot remove %s: %s", dir, strerror(errno));
    return 0;
}
