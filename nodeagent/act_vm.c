/* Action steps on the thread pool: job VM start (warm pool or cold boot),
 * pause, resume, suspend, restore, resize, stop, destroy; app instances;
 * power and pool hints. Each `run` blocks in the driver; each `after` runs
 * on the loop and records the outcome in the VM-ID repository. */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "actions_int.h"

/* ------------------------------------------------------------ start */

static int copy_file(const char *from, FILE *to)
{
    FILE *f = fopen(from, "rb");
    if (!f)
        return -errno;
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
        fwrite(buf, 1, n, to);
    fclose(f);
    return 0;
}

/* The job's environment as a sourced file: export K='v' lines. */
static char *env_script(json_t *env)
{
    if (!json_is_object(env) || json_object_size(env) == 0)
        return NULL;
    struct wlm_buf b;
    wlm_buf_init(&b);
    const char *k;
    json_t *v;
    json_object_foreach(env, k, v)
    {
        wlm_buf_printf(&b, "export %s='", k);
        for (const char *p = json_string_value(v); p && *p; p++) {
            if (*p == '\'')
                wlm_buf_append(&b, "'\\''", 4);
            else
                wlm_buf_append(&b, p, 1);
        }
        wlm_buf_append(&b, "'\n", 2);
    }
    return wlm_buf_steal(&b);
}

/* The newc cpio of /job: cmd, .env and the files of job_dir. */
static int build_job_cpio(struct nodeagent *a, struct na_action *x, const char *out,
                          struct wlm_error *err)
{
    (void)a;
    char *env = env_script(json_object_get(x->params, "env"));
    const char *names[] = {"cmd", ".env"};
    const char *data[] = {x->rec.command, env ? env : ""};
    int r = nodeagent_cpio_write(out, na_pstr(x, "job_dir"), "job", names, data, env ? 2 : 1, err);
    free(env);
    return r;
}

/* The job's initramfs for a cold boot: the cpio of /job followed by the
 * base archive (busybox + init). The kernel unpacks concatenated archives
 * in order; an uncompressed one must come first, the way early microcode
 * is prepended to an initrd. */
static int build_job_initrd(struct nodeagent *a, struct na_action *x, char *out, size_t n,
                            struct wlm_error *err)
{
    na_job_path(a, x->job, "initrd.img", out, n);
    int r = build_job_cpio(a, x, out, err);
    if (r < 0)
        return r;
    FILE *o = fopen(out, "ab");
    if (!o)
        return wlm_error_set(err, errno, "cannot write %s: %s", out, strerror(errno));
    r = copy_file(a->initramfs, o);
    if (r < 0) {
        fclose(o);
        return wlm_error_setf(err, WLM_EINVAL, "initramfs",
                              "cannot read the job VM initramfs %s: %s (build it with "
                              "scripts/build-initramfs)",
                              a->initramfs, strerror(-r));
    }
    if (fclose(o) != 0)
        return wlm_error_set(err, WLM_EIO, "cannot write %s", out);
    return 0;
}

static void start_result(struct na_action *x, const char *path, double t_pool, double t_create,
                         double t0)
{
    struct nodeagent_vm_rec *r = &x->rec;
    na_set_result(x, json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:f,s:f,s:f}", "path", path, "domain",
                               r->domain, "uuid", r->uuid, "image", r->image, "hostname",
                               r->hostname, "mac", r->mac, "ip", r->ip, "pool_seconds", t_pool,
                               "create_seconds", t_create, "total_seconds", wlm_now_mono() - t0));
}

void na_start_run(struct na_action *x)
{
    struct nodeagent *a = x->a;
    struct nodeagent_vm_rec *r = &x->rec;
    char dir[1200], console[1200], initrd[1200], payload[1200];
    double t0 = wlm_now_mono();
    na_job_path(a, x->job, NULL, dir, sizeof(dir));
    mkdir(dir, 0755);
    na_job_path(a, x->job, "console.log", console, sizeof(console));
    int fd = open(console, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0)
        close(fd);
    int is_test = !strncmp(a->cfg.libvirt_uri, "test:", 5);
    int vcpus = (int)na_pint(x, "vcpus", 1);
    long long mem = na_pint(x, "memory_mb", a->cfg.vm_memory_mb);
    char why[600] = "";
    if (!is_test && a->warm) {
        /* Warm path: a parked VM of this shape takes the job. */
        na_job_path(a, x->job, "job.cpio", payload, sizeof(payload));
        if (build_job_cpio(a, x, payload, &x->err) < 0)
            return;
        struct na_warm_job wj = {.job = x->job,
                                 .vcpus = vcpus,
                                 .memory_mb = mem,
                                 .payload = payload,
                                 .console = console,
                                 .hostname = r->hostname,
                                 .ip = r->ip};
        struct na_warm_claim wc;
        int w = na_warm_claim(a, &wj, &wc, &x->err);
        unlink(payload);
        if (w == 0) {
            a->warm_starts++;
            wlm_strlcpy(r->image, wc.image, sizeof(r->image));
            wlm_strlcpy(r->domain, wc.domain, sizeof(r->domain));
            r->mac[0] = '\0'; /* pool VMs have no NIC */
            struct nodeagent_wl_info wi = {0};
            if (a->vm->ops->info(a->vm, x->job, &wi, NULL) == 0)
                wlm_strlcpy(r->uuid, wi.uuid, sizeof(r->uuid));
            start_result(x, "pool", 0, wc.handoff_seconds, t0);
            json_object_set_new(x->result, "start_seconds", json_real(wc.start_seconds));
            return;
        }
        if (w < 0) {
            /* The pool VM failed; the job still gets a cold boot. */
            snprintf(why, sizeof(why), "pool VM failed: %s", x->err.msg);
            wlm_error_clear(&x->err);
        } else {
            wlm_strlcpy(why, wc.why, sizeof(why));
        }
        /* Memory held by parked VMs is reclaimable: give it back first. */
        int ev = na_warm_evict(a, mem * 2);
        if (ev)
            wlm_info(NA_COMP, "parked VMs destroyed to make room for a cold boot", "job=%s n=%d",
                     x->job, ev);
    }
    if (!is_test && build_job_initrd(a, x, initrd, sizeof(initrd), &x->err) < 0)
        return;
    double t_pool = wlm_now_mono();
    if (a->pool && nodeagent_pool_take(a->pool, &x->image, &x->err) < 0)
        return;
    t_pool = wlm_now_mono() - t_pool;
    struct nodeagent_spec s = {
        .id = x->job,
        .command = r->command,
        .image = x->image,
        .initrd = is_test ? NULL : initrd,
        .console = console,
        .hostname = r->hostname,
        .mac = r->mac,
        .ip = r->ip,
        .vcpus = vcpus,
        .memory_mb = mem,
    };
    double t1 = wlm_now_mono();
    if (a->vm->ops->start(a->vm, &s, &x->err) < 0 ||
        (!is_test && na_wait_console(a, x->job, console, "WLM-START", (double)a->cfg.boot_timeout_s,
                                     &x->err) < 0)) {
        if (a->pool && x->image)
            nodeagent_pool_release(a->pool, x->image, NULL);
        return;
    }
    a->cold_starts++;
    struct nodeagent_wl_info wi = {0};
    if (a->vm->ops->info(a->vm, x->job, &wi, NULL) == 0)
        wlm_strlcpy(r->uuid, wi.uuid, sizeof(r->uuid));
    wlm_strlcpy(r->image, x->image ? x->image : "", sizeof(r->image));
    start_result(x, "cold", t_pool, wlm_now_mono() - t1, t0);
    if (!is_test)
        json_object_set_new(x->result, "start_seconds", json_real(wlm_now_mono() - t1));
    if (why[0])
        json_object_set_new(x->result, "pool_miss", json_string(why));
}

void na_start_after(struct na_action *x)
{
    if (x->err.code) {
        nodeagent_repo_delete(x->a->repo, x->job, NULL);
        return;
    }
    wlm_strlcpy(x->rec.state, "running", sizeof(x->rec.state));
    nodeagent_repo_put(x->a->repo, &x->rec, &x->err);
}

/* ------------------------------------------------------------ simple ops */

void na_pause_run(struct na_action *x)
{
    x->a->vm->ops->pause(x->a->vm, x->job, &x->err);
}

void na_resume_run(struct na_action *x)
{
    x->a->vm->ops->resume(x->a->vm, x->job, &x->err);
}

static void set_state_after(struct na_action *x, const char *state)
{
    if (x->err.code)
        return;
    wlm_strlcpy(x->rec.state, state, sizeof(x->rec.state));
    nodeagent_repo_put(x->a->repo, &x->rec, &x->err);
    if (!x->result)
        na_set_result(x, json_pack("{s:s}", "state", state));
}

void na_pause_after(struct na_action *x)
{
    set_state_after(x, "paused");
}
void na_resume_after(struct na_action *x)
{
    set_state_after(x, "running");
}

void na_suspend_run(struct na_action *x)
{
    struct nodeagent *a = x->a;
    double t0 = wlm_now_mono();
    if (a->vm->ops->suspend(a->vm, x->job, x->rec.save_path, &x->err) < 0)
        return;
    struct stat sb;
    long long bytes = stat(x->rec.save_path, &sb) == 0 ? (long long)sb.st_size : 0;
    na_set_result(x, json_pack("{s:s,s:s,s:I,s:f}", "state", "suspended", "path", x->rec.save_path,
                               "bytes", bytes, "seconds", wlm_now_mono() - t0));
}

void na_suspend_after(struct na_action *x)
{
    set_state_after(x, "suspended");
}

void na_restore_run(struct na_action *x)
{
    struct nodeagent *a = x->a;
    char dir[1200], console[1200];
    na_job_path(a, x->job, NULL, dir, sizeof(dir));
    mkdir(dir, 0755);
    na_job_path(a, x->job, "console.log", console, sizeof(console));
    int fd = open(console, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0)
        close(fd);
    double t0 = wlm_now_mono();
    if (a->vm->ops->restore(a->vm, x->job, x->rec.save_path, console, &x->err) < 0)
        return;
    /* The save file is consumed: a second restore would run the job twice. */
    unlink(x->rec.save_path);
    struct nodeagent_wl_info wi = {0};
    if (a->vm->ops->info(a->vm, x->job, &wi, NULL) == 0)
        wlm_strlcpy(x->rec.uuid, wi.uuid, sizeof(x->rec.uuid));
    na_set_result(x, json_pack("{s:s,s:f}", "state", "running", "seconds", wlm_now_mono() - t0));
}

void na_restore_after(struct na_action *x)
{
    if (x->err.code)
        return;
    x->rec.save_path[0] = '\0';
    set_state_after(x, "running");
}

void na_resize_run(struct na_action *x)
{
    struct nodeagent *a = x->a;
    int app = na_kind_is_app(x->kind);
    struct nodeagent_driver *d = app ? a->proc : a->vm;
    double cap = 0;
    wlm_json_get_num(x->params, "cpu_cap_mhz", 0, 0, 1e9, &cap, NULL);
    struct nodeagent_resize r = {
        .vcpus = (int)na_pint(x, "vcpus", 0),
        .pin = na_pstr(x, "pin"),
        .cpu_shares = na_pint(x, "cpu_shares", 0),
        .vcpu_quota_us = na_pint(x, "vcpu_quota", 0),
        .period_us = na_pint(x, "vcpu_period", 0),
        .cpu_cap_mhz = cap,
    };
    if (d->ops->resize(d, x->job, &r, &x->err) < 0)
        return;
    struct nodeagent_wl_info wi = {0};
    if (d->ops->info(d, x->job, &wi, &x->err) < 0)
        return;
    na_set_result(x, json_pack("{s:i,s:I,s:I,s:I}", "vcpus", wi.vcpus, "cpu_shares", wi.cpu_shares,
                               "vcpu_quota", wi.vcpu_quota_us, "vcpu_period", wi.period_us));
}

void na_stop_run(struct na_action *x)
{
    int force = 0;
    wlm_json_get_bool(x->params, "force", 0, &force, NULL);
    struct nodeagent_driver *d = na_kind_is_app(x->kind) ? x->a->proc : x->a->vm;
    struct nodeagent_inst_rec who = {0};
    int app = na_kind_is_app(x->kind);
    if (app)
        nodeagent_process_identity(d, x->job, &who, NULL);
    if (d->ops->stop(d, x->job, force, &x->err) < 0)
        return;
    if (app) {
        /* Stopped on purpose: its private directory goes too. */
        char wd[1200];
        struct wlm_error e2 = {0};
        snprintf(wd, sizeof(wd), "%s/%s", x->a->cfg.app_dir, x->job);
        if (nodeagent_process_remove_workdir(wd, who.user[0] ? who.user : NULL, &e2) < 0)
            wlm_warn(NA_COMP, "instance directory left behind", "instance=%s error=\"%s\"", x->job,
                     e2.msg);
        return;
    }
    if (x->a->pool && x->rec.image[0])
        nodeagent_pool_release(x->a->pool, x->rec.image, NULL);
}

void na_stop_after(struct na_action *x)
{
    if (x->err.code)
        return;
    if (na_kind_is_app(x->kind)) {
        nodeagent_repo_inst_delete(x->a->repo, x->job, NULL);
        na_set_result(x, json_pack("{s:s}", "state", "stopped"));
        return;
    }
    /* Stopped on purpose: not "failed", whatever the console says. */
    wlm_strlcpy(x->rec.state, "stopped", sizeof(x->rec.state));
    nodeagent_repo_put(x->a->repo, &x->rec, NULL);
    na_set_result(x, json_pack("{s:s}", "state", "stopped"));
}

void na_destroy_run(struct na_action *x)
{
    struct nodeagent *a = x->a;
    if (a->vm->ops->destroy(a->vm, x->job, &x->err) < 0)
        return;
    if (x->rec.save_path[0])
        unlink(x->rec.save_path);
    int scrubbed = 0;
    if (a->pool && x->rec.image[0] && nodeagent_pool_release(a->pool, x->rec.image, NULL) == 0)
        scrubbed = 1;
    na_set_result(x, json_pack("{s:s,s:b}", "state", "destroyed", "scrubbed", scrubbed));
}

void na_destroy_after(struct na_action *x)
{
    set_state_after(x, "destroyed");
}

/* ------------------------------------------------------------ processes */

/* The user an instance runs as: the action's `user`, else the agent's
 * --app-user; an agent that is not root runs instances as itself unless a
 * user is asked for explicitly (which then fails: it cannot switch). */
static const char *app_user(struct na_action *x)
{
    const char *u = na_pstr(x, "user");
    if (u && *u)
        return u;
    return geteuid() == 0 && x->a->cfg.app_user[0] ? x->a->cfg.app_user : NULL;
}

void na_app_start_run(struct na_action *x)
{
    struct nodeagent *a = x->a;
    char wd[1200], log[1300];
    char parent[600];
    wlm_strlcpy(parent, a->cfg.app_dir, sizeof(parent));
    for (char *p = parent + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        mkdir(parent, 0755);
        *p = '/';
    }
    if (mkdir(a->cfg.app_dir, 0755) != 0 && errno != EEXIST) {
        wlm_error_set(&x->err, errno, "cannot create the app directory %s: %s", a->cfg.app_dir,
                      strerror(errno));
        return;
    }
    snprintf(wd, sizeof(wd), "%s/%s", a->cfg.app_dir, x->job);
    snprintf(log, sizeof(log), "%s/stdout.log", wd);
    const char *user = app_user(x);
    struct nodeagent_spec s = {
        .id = x->job,
        .command = na_pstr(x, "command"),
        .console = log,
        .port = (int)na_pint(x, "port", 0),
        .user = user,
        .workdir = wd,
    };
    double t0 = wlm_now_mono();
    if (a->proc->ops->start(a->proc, &s, &x->err) < 0)
        return;
    double cap = 0;
    wlm_json_get_num(x->params, "cpu_cap_mhz", 0, 0, 1e9, &cap, NULL);
    const char *capmode = nodeagent_process_cap_mode(a->proc);
    if (cap > 0) {
        struct nodeagent_resize r = {.cpu_cap_mhz = cap};
        struct wlm_error e2 = {0};
        if (a->proc->ops->resize(a->proc, x->job, &r, &e2) < 0)
            capmode = "uncapped";
    }
    struct nodeagent_wl_info wi = {0};
    a->proc->ops->info(a->proc, x->job, &wi, NULL);
    struct passwd *pw = user ? NULL : getpwuid(geteuid());
    na_set_result(x, json_pack("{s:I,s:i,s:s,s:f,s:s,s:s}", "pid", (json_int_t)wi.pid, "port",
                               s.port, "cap", capmode, "seconds", wlm_now_mono() - t0, "user",
                               user ? user
                               : pw ? pw->pw_name
                                    : "?",
                               "workdir", wd));
}

/* Record the running instance (pid + start time + command) so a restarted
 * agent takes it back instead of losing it. */
void na_app_start_after(struct na_action *x)
{
    if (x->err.code)
        return;
    struct nodeagent_inst_rec r = {0};
    if (nodeagent_process_identity(x->a->proc, x->job, &r, NULL) < 0)
        return;
    r.port = (int)na_pint(x, "port", 0);
    struct wlm_error err = {0};
    if (nodeagent_repo_inst_put(x->a->repo, &r, &err) < 0)
        wlm_warn(NA_COMP, "instance not recorded: a restart will not re-adopt it",
                 "instance=%s error=\"%s\"", x->job, err.msg);
}

/* ------------------------------------------------------------ power */

void na_power_run(struct na_action *x)
{
    struct nodeagent *a = x->a;
    int on = !strcmp(x->kind, "power_on");
    const char *cmd = on ? a->cfg.power_on_cmd : a->cfg.power_off_cmd;
    if (cmd[0]) {
        int rc = system(cmd);
        if (rc != 0) {
            wlm_error_set(&x->err, WLM_EIO, "power hook '%s' exited with status %d", cmd, rc);
            return;
        }
    }
    na_set_result(x, json_pack("{s:s,s:s}", "state", on ? "on" : "off", "mode",
                               cmd[0] ? "hook" : "simulated"));
}

void na_power_after(struct na_action *x)
{
    if (!x->err.code)
        x->a->powered_on = !strcmp(x->kind, "power_on");
}

void na_pool_hint_run(struct na_action *x)
{
    /* Applied when accepted; the result shows the pool as it now stands. */
    json_t *w = na_warm_json(x->a);
    na_set_result(x, w ? w : json_pack("{s:s}", "park", "none"));
}
