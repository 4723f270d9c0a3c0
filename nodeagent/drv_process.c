/* Process driver: web application instances as child processes, capped
 * through the cgroup cpu controller.
 *
 * Each instance gets its own cgroup "<root>/<id>" so its cap and CPU time are
 * its own. v2 (cpu.max) is preferred; v1 (cpu.cfs_quota_us) otherwise; when
 * neither hierarchy is writable the driver says "uncapped" and a cap request
 * fails with -WLM_EUNSUPPORTED rather than pretending. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "nodeagent.h"

extern char **environ;

struct pr_inst {
    char id[128];
    pid_t pid;
    int paused;
    double cap_mhz;
};

struct pr_driver {
    struct nodeagent_driver base;
    pthread_mutex_t mu;
    struct pr_inst *inst;
    size_t n;
    char cg_root[512]; /* "" when uncapped */
    const char *mode;  /* "v2", "v1", "uncapped" */
    int mhz;
};

static struct pr_driver *PR(struct nodeagent_driver *d) { return (struct pr_driver *)d; }

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

static struct pr_inst *find(struct pr_driver *d, const char *id)
{
    for (size_t i = 0; i < d->n; i++)
        if (!strcmp(d->inst[i].id, id))
            return &d->inst[i];
    return NULL;
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

static int pr_start(struct nodeagent_driver *dd, const struct nodeagent_spec *s,
                    struct wlm_error *err)
{
    struct pr_driver *d = PR(dd);
    if (!s->command || !*s->command)
        return wlm_error_setf(err, WLM_EINVAL, "command", "a process needs a command");
    pthread_mutex_lock(&d->mu);
    struct pr_inst *old = find(d, s->id);
    if (old && kill(old->pid, 0) == 0) {
        pthread_mutex_unlock(&d->mu);
        return wlm_error_set(err, WLM_ECONFLICT, "instance '%s' is already running (pid %d)",
                             s->id, (int)old->pid);
    }
    pthread_mutex_unlock(&d->mu);
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
    char cgdir[700] = "", procs[800] = "", tasks[800] = "";
    if (d->cg_root[0]) {
        snprintf(cgdir, sizeof(cgdir), "%s/%s", d->cg_root, s->id);
        mkdir(cgdir, 0755);
        snprintf(procs, sizeof(procs), "%s/cgroup.procs", cgdir);
        snprintf(tasks, sizeof(tasks), "%s/tasks", cgdir);
    }
    /* Everything the child needs is prepared here: after fork() in a
     * threaded process only async-signal-safe calls are allowed. */
    char port_env[32];
    snprintf(port_env, sizeof(port_env), "PORT=%d", s->port);
    size_t nenv = 0;
    while (environ[nenv])
        nenv++;
    char **envp = calloc(nenv + 2, sizeof(char *));
    if (!envp) {
        free(line);
        return wlm_error_set(err, ENOMEM, "out of memory");
    }
    size_t k = 0;
    for (size_t i = 0; i < nenv; i++)
        if (strncmp(environ[i], "PORT=", 5) != 0)
            envp[k++] = environ[i];
    envp[k++] = port_env;
    envp[k] = NULL;
    const char *out = s->console && *s->console ? s->console : "/dev/null";
    char *const argv[] = {"sh", "-c", line, NULL};
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        free(line);
        free(envp);
        return wlm_error_set(err, e, "fork: %s", strerror(e));
    }
    if (pid == 0) {
        setsid();
        /* Writing "0" moves the writing process itself. */
        if (procs[0] && write_file(procs, "0") < 0)
            write_file(tasks, "0");
        int fd = open(out, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execve("/bin/sh", argv, envp);
        _exit(127);
    }
    free(envp);
    free(line);
    pthread_mutex_lock(&d->mu);
    struct pr_inst *in = find(d, s->id);
    if (!in) {
        struct pr_inst *arr = realloc(d->inst, (d->n + 1) * sizeof(*arr));
        if (arr) {
            d->inst = arr;
            in = &d->inst[d->n++];
        }
    }
    if (in) {
        memset(in, 0, sizeof(*in));
        wlm_strlcpy(in->id, s->id, sizeof(in->id));
        in->pid = pid;
    }
    pthread_mutex_unlock(&d->mu);
    return 0;
}

static pid_t pid_of(struct pr_driver *d, const char *id, struct wlm_error *err)
{
    pthread_mutex_lock(&d->mu);
    struct pr_inst *in = find(d, id);
    pid_t pid = in ? in->pid : 0;
    pthread_mutex_unlock(&d->mu);
    if (!pid)
        wlm_error_set(err, WLM_ENOTFOUND, "unknown instance '%s'", id);
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
                      struct wlm_error *err)
{
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

static int pr_stop(struct nodeagent_driver *dd, const char *id, int force, struct wlm_error *err)
{
    struct pr_driver *d = PR(dd);
    pid_t pid = pid_of(d, id, err);
    if (!pid)
        return -WLM_ENOTFOUND;
    reap(pid, force);
    pthread_mutex_lock(&d->mu);
    struct pr_inst *in = find(d, id);
    if (in) {
        *in = d->inst[d->n - 1];
        d->n--;
    }
    pthread_mutex_unlock(&d->mu);
    if (d->cg_root[0]) {
        char cgdir[700];
        snprintf(cgdir, sizeof(cgdir), "%s/%s", d->cg_root, id);
        rmdir(cgdir);
    }
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

/* Fields of /proc/PID/stat after the command name. */
struct pstat {
    char state;
    int session;
    unsigned long long utime, stime;
    long long cutime, cstime;
    long rss;
};

static int read_stat(const char *path, struct pstat *ps)
{
    char buf[1024];
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    /* state(3) ppid pgrp session(6) tty tpgid flags minflt cminflt majflt
     * cmajflt utime(14) stime cutime cstime priority nice threads
     * itrealvalue starttime vsize rss(24) */
    if (!p || sscanf(p + 2,
                     "%c %*d %*d %d %*d %*d %*u %*u %*u %*u %*u %llu %llu %lld %lld %*d %*d %*d "
                     "%*d %*u %*u %ld",
                     &ps->state, &ps->session, &ps->utime, &ps->stime, &ps->cutime, &ps->cstime,
                     &ps->rss) != 7)
        return -1;
    return 0;
}

/* CPU time and memory of an instance: its leader (the session it was
 * started in, see setsid) plus every live process of that session, plus the
 * children already reaped. So "a; b" or a server that forks workers is
 * measured whole, not just the shell. */
static void read_proc(pid_t pid, struct nodeagent_wl_info *out)
{
    char path[64];
    struct pstat lead;
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    if (read_stat(path, &lead) < 0) {
        out->state = NODEAGENT_WL_SHUTOFF;
        return;
    }
    long hz = sysconf(_SC_CLK_TCK);
    long page_kb = sysconf(_SC_PAGESIZE) / 1024;
    unsigned long long ticks = lead.utime + lead.stime;
    if (lead.cutime > 0)
        ticks += (unsigned long long)lead.cutime;
    if (lead.cstime > 0)
        ticks += (unsigned long long)lead.cstime;
    long rss = lead.rss;
    DIR *dir = opendir("/proc");
    struct dirent *e;
    while (dir && (e = readdir(dir))) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9' || atoi(e->d_name) == (int)pid)
            continue;
        char sp[300];
        struct pstat ps;
        snprintf(sp, sizeof(sp), "/proc/%s/stat", e->d_name);
        if (read_stat(sp, &ps) == 0 && ps.session == (int)pid) {
            ticks += ps.utime + ps.stime;
            rss += ps.rss;
        }
    }
    if (dir)
        closedir(dir);
    out->cpu_seconds = (double)ticks / (double)(hz > 0 ? hz : 100);
    out->memory_kb = rss * page_kb;
    out->state = lead.state == 'T'   ? NODEAGENT_WL_PAUSED
                 : lead.state == 'Z' ? NODEAGENT_WL_SHUTOFF
                                     : NODEAGENT_WL_RUNNING;
}

static void fill(struct pr_driver *d, const struct pr_inst *in, struct nodeagent_wl_info *out)
{
    memset(out, 0, sizeof(*out));
    wlm_strlcpy(out->id, in->id, sizeof(out->id));
    out->pid = in->pid;
    out->cpu_shares = -1;
    out->vcpu_quota_us = -1;
    /* Reap a child that exited so it shows as shut off, not a zombie. */
    if (waitpid(in->pid, NULL, WNOHANG) == in->pid) {
        out->state = NODEAGENT_WL_SHUTOFF;
        return;
    }
    read_proc(in->pid, out);
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
    struct pr_driver *d = calloc(1, sizeof(*d));
    if (!d) {
        wlm_error_set(err, ENOMEM, "out of memory");
        return NULL;
    }
    d->base.ops = &pr_ops;
    d->mhz = node_mhz;
    pthread_mutex_init(&d->mu, NULL);
    detect_cgroup(d, cgroup_name && *cgroup_name ? cgroup_name : "wlm");
    return &d->base;
}

const char *nodeagent_process_cap_mode(struct nodeagent_driver *d)
{
    return d && d->ops == &pr_ops ? PR(d)->mode : "uncapped";
}
