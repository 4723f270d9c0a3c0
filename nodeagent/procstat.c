/* What /proc says about an app instance: its CPU time, the time it waited
 * for a CPU, its memory, and whether a pid is still the process the agent
 * started (pid + start time + the instance marker and command).
 *
 * An instance is a session (the driver calls setsid), so "a; b" or a server
 * that forks workers is measured whole: the leader and every live process
 * whose session id is the leader's pid. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nodeagent.h"

/* Fields of /proc/PID/stat after the command name. */
struct pstat {
    char state;
    int session;
    unsigned long long utime, stime;
    long long cutime, cstime;
    unsigned long long starttime;
    long rss;
};

static int read_stat(const char *path, struct pstat *ps)
{
    char buf[1024];
    FILE *f = fopen(path, "r");
    if (!f)
        return -errno;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    /* state(3) ppid pgrp session(6) tty tpgid flags minflt cminflt majflt
     * cmajflt utime(14) stime cutime cstime priority nice threads
     * itrealvalue starttime(22) vsize rss(24) */
    if (!p || sscanf(p + 2,
                     "%c %*d %*d %d %*d %*d %*u %*u %*u %*u %*u %llu %llu %lld %lld %*d %*d %*d "
                     "%*d %llu %*u %ld",
                     &ps->state, &ps->session, &ps->utime, &ps->stime, &ps->cutime, &ps->cstime,
                     &ps->starttime, &ps->rss) != 8)
        return -EINVAL;
    return 0;
}

/* Run-queue delay (ns) summed over the threads of one process: the second
 * field of /proc/PID/task/TID/schedstat. */
static double wait_seconds(const char *pid)
{
    char dir[64];
    snprintf(dir, sizeof(dir), "/proc/%s/task", pid);
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    double ns = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        char path[600];
        snprintf(path, sizeof(path), "%s/%s/schedstat", dir, e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        unsigned long long run = 0, delay = 0;
        if (fscanf(f, "%llu %llu", &run, &delay) == 2)
            ns += (double)delay;
        fclose(f);
    }
    closedir(d);
    return ns / 1e9;
}

int nodeagent_proc_session_usage(long leader, struct nodeagent_proc_usage *out)
{
    memset(out, 0, sizeof(*out));
    char path[64], spid[32];
    struct pstat lead;
    snprintf(spid, sizeof(spid), "%ld", leader);
    snprintf(path, sizeof(path), "/proc/%ld/stat", leader);
    int r = read_stat(path, &lead);
    if (r < 0)
        return r;
    long hz = sysconf(_SC_CLK_TCK);
    long page_kb = sysconf(_SC_PAGESIZE) / 1024;
    unsigned long long ticks = lead.utime + lead.stime;
    if (lead.cutime > 0)
        ticks += (unsigned long long)lead.cutime;
    if (lead.cstime > 0)
        ticks += (unsigned long long)lead.cstime;
    long rss = lead.rss;
    double wait = wait_seconds(spid);
    DIR *dir = opendir("/proc");
    struct dirent *e;
    while (dir && (e = readdir(dir))) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9' || atol(e->d_name) == leader)
            continue;
        char sp[300];
        struct pstat ps;
        snprintf(sp, sizeof(sp), "/proc/%s/stat", e->d_name);
        if (read_stat(sp, &ps) == 0 && ps.session == (int)leader) {
            ticks += ps.utime + ps.stime;
            rss += ps.rss;
            wait += wait_seconds(e->d_name);
        }
    }
    if (dir)
        closedir(dir);
    out->cpu_seconds = (double)ticks / (double)(hz > 0 ? hz : 100);
    out->wait_seconds = wait;
    out->rss_kb = rss * page_kb;
    out->state = lead.state;
    out->start_ticks = lead.starttime;
    return 0;
}

int nodeagent_proc_start_ticks(long pid, unsigned long long *out)
{
    char path[64];
    struct pstat ps;
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    int r = read_stat(path, &ps);
    if (r == 0)
        *out = ps.starttime;
    return r;
}

/* A NUL-separated /proc file (cmdline, environ), malloc'd, NUL-terminated. */
static char *read_nul_file(long pid, const char *name, size_t *len)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%ld/%s", pid, name);
    FILE *f = fopen(path, "rb");
    *len = 0;
    if (!f)
        return NULL;
    struct wlm_buf b;
    wlm_buf_init(&b);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0 && b.len < (1u << 20))
        wlm_buf_append(&b, buf, n);
    fclose(f);
    wlm_buf_append(&b, "\0", 1);
    *len = b.len - 1;
    return wlm_buf_steal(&b);
}

static int has_entry(const char *blob, size_t len, const char *want)
{
    for (size_t i = 0; i < len; i += strlen(blob + i) + 1)
        if (!strcmp(blob + i, want))
            return 1;
    return 0;
}

int nodeagent_proc_check(long pid, unsigned long long start_ticks, const char *id,
                         const char *command, char *why, size_t n)
{
    unsigned long long st = 0;
    if (pid <= 0 || nodeagent_proc_start_ticks(pid, &st) < 0) {
        snprintf(why, n, "pid %ld is gone", pid);
        return -WLM_ENOTFOUND;
    }
    if (st != start_ticks) {
        snprintf(why, n, "pid %ld was reused (started at tick %llu, not %llu)", pid, st,
                 start_ticks);
        return -WLM_ENOTFOUND;
    }
    size_t elen = 0, clen = 0;
    char *env = read_nul_file(pid, "environ", &elen);
    char *cmd = read_nul_file(pid, "cmdline", &clen);
    char marker[200];
    snprintf(marker, sizeof(marker), "WLM_INSTANCE=%s", id);
    int ok = env && has_entry(env, elen, marker);
    if (!ok) {
        snprintf(why, n, "pid %ld does not carry %s in its environment", pid, marker);
    } else if (cmd && command && *command) {
        /* Either the shell running the line, or the program the line
         * exec'd (its first word, without "exec"). */
        const char *line = command;
        if (!strncmp(line, "exec ", 5))
            line += 5;
        while (*line == ' ')
            line++;
        size_t w = strcspn(line, " \t");
        const char *prog = cmd;
        const char *base = strrchr(prog, '/');
        base = base ? base + 1 : prog;
        char first[256];
        snprintf(first, sizeof(first), "%.*s", (int)(w < 255 ? w : 255), line);
        const char *fbase = strrchr(first, '/');
        fbase = fbase ? fbase + 1 : first;
        int shell = !strcmp(base, "sh") && has_entry(cmd, clen, command);
        ok = shell || !strcmp(base, fbase);
        if (!ok)
            snprintf(why, n, "pid %ld runs '%s', not the instance's command '%.200s'", pid, cmd,
                     command);
    }
    free(env);
    free(cmd);
    return ok ? 0 : -WLM_ENOTFOUND;
}
