/* Actions: POST /v1/actions {id, kind, ...} -> 202, carried out on the
 * libuv thread pool (libvirt calls block), results kept by id so a repeated
 * id returns the first result, completion posted to the controller.
 *
 * Validation and conflict checks run on the loop thread against the VM-ID
 * repository before anything is queued, so a bad request changes nothing.
 * At most one action per job runs at a time. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

struct na_action {
    struct na_action *next;
    struct nodeagent *a;
    char id[128];
    char kind[24];
    char job[128]; /* job or instance id; "" for node actions */
    json_t *params;
    char status[16]; /* accepted, running, succeeded, failed */
    json_t *result;
    struct wlm_error err;
    double t_accept, t_start, t_done;
    uv_work_t work;
    void (*run)(struct na_action *); /* on the thread pool */
    void (*after)(struct na_action *);
    int done; /* set by `after` steps that finish the action */
    /* scratch shared by run/after */
    struct nodeagent_vm_rec rec;
    int have_rec;
    char *image;
    /* migrate fallback */
    char target[256];
    char remote_id[160];
    int polls, stage;
    uv_timer_t *timer;
};

static const char *const KINDS[] = {"start",  "pause",     "resume",    "suspend",    "restore",
                                    "migrate", "resize",   "stop",      "destroy",    "app_start",
                                    "app_stop", "app_resize", "power_off", "power_on", "pool_hint",
                                    NULL};

static int kind_is_app(const char *k) { return !strncmp(k, "app_", 4); }
static int kind_is_node(const char *k)
{
    return !strncmp(k, "power_", 6) || !strcmp(k, "pool_hint");
}

static int valid_id(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 100)
        return 0;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_' || *p == '.'))
            return 0;
    return s[0] != '.';
}

static struct na_action *find_action(struct nodeagent *a, const char *id)
{
    for (struct na_action *x = a->actions; x; x = x->next)
        if (!strcmp(x->id, id))
            return x;
    return NULL;
}

int na_job_busy(struct nodeagent *a, const char *job)
{
    for (struct na_action *x = a->actions; x; x = x->next)
        if (x->job[0] && !strcmp(x->job, job) &&
            (!strcmp(x->status, "accepted") || !strcmp(x->status, "running")))
            return 1;
    return 0;
}

static json_t *action_json(const struct na_action *x)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(x->id));
    json_object_set_new(o, "kind", json_string(x->kind));
    if (x->job[0])
        json_object_set_new(o, kind_is_app(x->kind) ? "instance" : "job", json_string(x->job));
    json_object_set_new(o, "status", json_string(x->status));
    json_object_set_new(o, "node", json_string(x->a->cfg.name));
    if (x->result)
        json_object_set_new(o, "result", json_deep_copy(x->result));
    if (!strcmp(x->status, "failed")) {
        json_object_set_new(o, "error", json_string(wlm_error_name(x->err.code)));
        json_object_set_new(o, "detail", json_string(x->err.msg));
    }
    if (x->t_done > 0)
        json_object_set_new(o, "seconds", json_real(x->t_done - x->t_start));
    return o;
}

static void action_free(struct na_action *x)
{
    json_decref(x->params);
    json_decref(x->result);
    free(x->image);
    free(x);
}

void na_actions_free(struct nodeagent *a)
{
    struct na_action *x = a->actions;
    while (x) {
        struct na_action *n = x->next;
        action_free(x);
        x = n;
    }
    a->actions = NULL;
}

static void set_result(struct na_action *x, json_t *r)
{
    json_decref(x->result);
    x->result = r;
}

static void migrate_timer_closed(uv_handle_t *h);

/* ------------------------------------------------------------ completion */

static void on_notify_done(const struct wlm_http_response *resp, const struct wlm_error *err,
                           void *ud)
{
    struct na_action *x = ud;
    if (err && err->code)
        wlm_warn(NA_COMP, "completion notification not delivered", "action=%s error=\"%s\"", x->id,
                 err->msg);
    else if (resp->status >= 300)
        wlm_debug(NA_COMP, "controller refused completion notification", "action=%s status=%d",
                  x->id, resp->status);
    na_pending_dec(x->a);
}

static void action_finish(struct na_action *x)
{
    struct nodeagent *a = x->a;
    x->t_done = wlm_now_mono();
    if (x->timer) {
        uv_timer_stop(x->timer);
        uv_close((uv_handle_t *)x->timer, migrate_timer_closed);
        x->timer = NULL;
    }
    const char *st = x->err.code ? "failed" : "succeeded";
    wlm_strlcpy(x->status, st, sizeof(x->status));
    char labels[96];
    snprintf(labels, sizeof(labels), "kind=\"%s\",status=\"%s\"", x->kind, st);
    wlm_counter_add(wlm_metrics_counter(a->metrics, "wlm_nodeagent_actions_total",
                                        "Actions finished by kind and status", labels),
                    1);
    if (x->err.code)
        wlm_warn(NA_COMP, "action failed", "id=%s kind=%s job=%s error=\"%s\"", x->id, x->kind,
                 x->job, x->err.msg);
    else
        wlm_info(NA_COMP, "action done", "id=%s kind=%s job=%s seconds=%.3f", x->id, x->kind,
                 x->job, x->t_done - x->t_start);
    if (a->stopping || !a->client)
        return;
    json_t *body = action_json(x);
    char *s = wlm_json_dumps(body);
    json_decref(body);
    char *url = wlm_asprintf("%s/v1/actions/%s/complete", a->cfg.controller, x->id);
    na_pending_inc(a);
    if (wlm_http_client_request(a->client, "POST", url, a->cfg.token[0] ? a->cfg.token : NULL,
                                "application/json", s, strlen(s), 5000, on_notify_done, x) < 0)
        na_pending_dec(a);
    free(url);
    free(s);
}

static void work_run(uv_work_t *w)
{
    struct na_action *x = w->data;
    x->run(x);
}

static void work_after(uv_work_t *w, int status)
{
    struct na_action *x = w->data;
    struct nodeagent *a = x->a;
    (void)status;
    x->done = 1;
    if (x->after)
        x->after(x);
    if (x->done)
        action_finish(x);
    na_pending_dec(a);
}

static void queue_step(struct na_action *x, void (*run)(struct na_action *),
                       void (*after)(struct na_action *))
{
    x->run = run;
    x->after = after;
    x->work.data = x;
    na_pending_inc(x->a);
    if (uv_queue_work(x->a->loop, &x->work, work_run, work_after) != 0) {
        wlm_error_set(&x->err, WLM_EINTERNAL, "cannot queue work");
        na_pending_dec(x->a);
        action_finish(x);
    }
}

/* ------------------------------------------------------------ helpers */

static const char *pstr(struct na_action *x, const char *k)
{
    const char *s = NULL;
    wlm_json_get_str(x->params, k, 0, &s, NULL);
    return s;
}

static long long pint(struct na_action *x, const char *k, long long def)
{
    long long v = def;
    wlm_json_get_int(x->params, k, 0, -(1LL << 40), 1LL << 40, &v, NULL);
    return v;
}

static void job_path(struct nodeagent *a, const char *job, const char *file, char *out, size_t n)
{
    snprintf(out, n, "%s/jobs/%s%s%s", a->cfg.state_dir, job, file ? "/" : "", file ? file : "");
}

static void save_path_of(struct nodeagent *a, const char *job, char *out, size_t n)
{
    snprintf(out, n, "%s/%s.save", a->cfg.shared_dir, job);
}

static int rec_live(const struct nodeagent_vm_rec *r)
{
    return !strcmp(r->state, "running") || !strcmp(r->state, "paused") ||
           !strcmp(r->state, "starting");
}

/* Configuration management: hostname, MAC and IP from a pool of values. The
 * index is the lowest one not held by a live job, so values are reused only
 * after their job is gone. */
static void assign_config(struct nodeagent *a, struct nodeagent_vm_rec *r)
{
    struct nodeagent_vm_rec *recs = NULL;
    size_t n = 0;
    nodeagent_repo_list(a->repo, &recs, &n, NULL);
    unsigned a1 = 10, a2 = 77, a3 = 0, a4 = 10;
    sscanf(a->cfg.ip_pool, "%u.%u.%u.%u", &a1, &a2, &a3, &a4);
    for (unsigned idx = 0; idx < 4096; idx++) {
        char ip[40];
        unsigned v = a4 + idx;
        snprintf(ip, sizeof(ip), "%u.%u.%u.%u", a1, a2, (a3 + v / 256) & 255, v % 256);
        int taken = 0;
        for (size_t i = 0; i < n && !taken; i++)
            taken = (rec_live(&recs[i]) || !strcmp(recs[i].state, "suspended")) &&
                    !strcmp(recs[i].ip, ip);
        if (taken)
            continue;
        wlm_strlcpy(r->ip, ip, sizeof(r->ip));
        /* Locally administered MAC derived from the node name and index. */
        unsigned h = 2166136261u;
        for (const char *p = a->cfg.name; *p; p++)
            h = (h ^ (unsigned char)*p) * 16777619u;
        snprintf(r->mac, sizeof(r->mac), "52:54:%02x:%02x:%02x:%02x", h & 255, (h >> 8) & 255,
                 (idx >> 8) & 255, idx & 255);
        break;
    }
    snprintf(r->hostname, sizeof(r->hostname), "%.60s", r->job);
    for (char *p = r->hostname; *p; p++)
        if (*p == '_' || *p == '.')
            *p = '-';
    free(recs);
}

static void release_image_run(struct na_action *x)
{
    if (x->a->pool && x->image && *x->image)
        nodeagent_pool_release(x->a->pool, x->image, NULL);
}

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
    int r = nodeagent_cpio_write(out, pstr(x, "job_dir"), "job", names, data, env ? 2 : 1, err);
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
    job_path(a, x->job, "initrd.img", out, n);
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
    set_result(x, json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:f,s:f,s:f}", "path", path, "domain",
                            r->domain, "uuid", r->uuid, "image", r->image, "hostname",
                            r->hostname, "mac", r->mac, "ip", r->ip, "pool_seconds", t_pool,
                            "create_seconds", t_create, "total_seconds", wlm_now_mono() - t0));
}

static void start_run(struct na_action *x)
{
    struct nodeagent *a = x->a;
    struct nodeagent_vm_rec *r = &x->rec;
    char dir[1200], console[1200], initrd[1200], payload[1200];
    double t0 = wlm_now_mono();
    job_path(a, x->job, NULL, dir, sizeof(dir));
    mkdir(dir, 0755);
    job_path(a, x->job, "console.log", console, sizeof(console));
    int fd = open(console, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0)
        close(fd);
    int is_test = !strncmp(a->cfg.libvirt_uri, "test:", 5);
    int vcpus = (int)pint(x, "vcpus", 1);
    long long mem = pint(x, "memory_mb", a->cfg.vm_memory_mb);
    char why[600] = "";
    if (!is_test && a->warm) {
        /* Warm path: a parked VM of this shape takes the job. */
        job_path(a, x->job, "job.cpio", payload, sizeof(payload));
        if (build_job_cpio(a, x, payload, &x->err) < 0)
            return;
        struct na_warm_job wj = {.job = x->job, .vcpus = vcpus, .memory_mb = mem,
                                 .payload = payload, .console = console,
                                 .hostname = r->hostname, .ip = r->ip};
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
        (!is_test && na_wait_console(a, x->job, console, "WLM-START",
                                     (double)a->cfg.boot_timeout_s, &x->err) < 0)) {
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

static void start_after(struct na_action *x)
{
    if (x->err.code) {
        nodeagent_repo_delete(x->a->repo, x->job, NULL);
        return;
    }
    wlm_strlcpy(x->rec.state, "running", sizeof(x->rec.state));
    nodeagent_repo_put(x->a->repo, &x->rec, &x->err);
}

/* ------------------------------------------------------------ simple ops */

static void pause_run(struct na_action *x)
{
    x->a->vm->ops->pause(x->a->vm, x->job, &x->err);
}

static void resume_run(struct na_action *x)
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
        set_result(x, json_pack("{s:s}", "state", state));
}

static void pause_after(struct na_action *x) { set_state_after(x, "paused"); }
static void resume_after(struct na_action *x) { set_state_after(x, "running"); }

static void suspend_run(struct na_action *x)
{
    struct nodeagent *a = x->a;
    double t0 = wlm_now_mono();
    if (a->vm->ops->suspend(a->vm, x->job, x->rec.save_path, &x->err) < 0)
        return;
    struct stat sb;
    long long bytes = stat(x->rec.save_path, &sb) == 0 ? (long long)sb.st_size : 0;
    set_result(x, json_pack("{s:s,s:s,s:I,s:f}", "state", "suspended", "path", x->rec.save_path,
                            "bytes", bytes, "seconds", wlm_now_mono() - t0));
}

static void suspend_after(struct na_action *x) { set_state_after(x, "suspended"); }

static void restore_run(struct na_action *x)
{
    struct nodeagent *a = x->a;
    char dir[1200], console[1200];
    job_path(a, x->job, NULL, dir, sizeof(dir));
    mkdir(dir, 0755);
    job_path(a, x->job, "console.log", console, sizeof(console));
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
    set_result(x, json_pack("{s:s,s:f}", "state", "running", "seconds", wlm_now_mono() - t0));
}

static void restore_after(struct na_action *x)
{
    if (x->err.code)
        return;
    x->rec.save_path[0] = '\0';
    set_state_after(x, "running");
}

static void resize_run(struct na_action *x)
{
    struct nodeagent *a = x->a;
    int app = kind_is_app(x->kind);
    struct nodeagent_driver *d = app ? a->proc : a->vm;
    double cap = 0;
    wlm_json_get_num(x->params, "cpu_cap_mhz", 0, 0, 1e9, &cap, NULL);
    struct nodeagent_resize r = {
        .vcpus = (int)pint(x, "vcpus", 0),
        .pin = pstr(x, "pin"),
        .cpu_shares = pint(x, "cpu_shares", 0),
        .vcpu_quota_us = pint(x, "vcpu_quota", 0),
        .period_us = pint(x, "vcpu_period", 0),
        .cpu_cap_mhz = cap,
    };
    if (d->ops->resize(d, x->job, &r, &x->err) < 0)
        return;
    struct nodeagent_wl_info wi = {0};
    if (d->ops->info(d, x->job, &wi, &x->err) < 0)
        return;
    set_result(x, json_pack("{s:i,s:I,s:I,s:I}", "vcpus", wi.vcpus, "cpu_shares", wi.cpu_shares,
                            "vcpu_quota", wi.vcpu_quota_us, "vcpu_period", wi.period_us));
}

static void stop_run(struct na_action *x)
{
    int force = 0;
    wlm_json_get_bool(x->params, "force", 0, &force, NULL);
    struct nodeagent_driver *d = kind_is_app(x->kind) ? x->a->proc : x->a->vm;
    if (d->ops->stop(d, x->job, force, &x->err) < 0 || kind_is_app(x->kind))
        return;
    if (x->a->pool && x->rec.image[0])
        nodeagent_pool_release(x->a->pool, x->rec.image, NULL);
}

static void stop_after(struct na_action *x)
{
    if (x->err.code)
        return;
    if (kind_is_app(x->kind)) {
        set_result(x, json_pack("{s:s}", "state", "stopped"));
        return;
    }
    /* Stopped on purpose: not "failed", whatever the console says. */
    wlm_strlcpy(x->rec.state, "stopped", sizeof(x->rec.state));
    nodeagent_repo_put(x->a->repo, &x->rec, NULL);
    set_result(x, json_pack("{s:s}", "state", "stopped"));
}

static void destroy_run(struct na_action *x)
{
    struct nodeagent *a = x->a;
    if (a->vm->ops->destroy(a->vm, x->job, &x->err) < 0)
        return;
    if (x->rec.save_path[0])
        unlink(x->rec.save_path);
    int scrubbed = 0;
    if (a->pool && x->rec.image[0] && nodeagent_pool_release(a->pool, x->rec.image, NULL) == 0)
        scrubbed = 1;
    set_result(x, json_pack("{s:s,s:b}", "state", "destroyed", "scrubbed", scrubbed));
}

static void destroy_after(struct na_action *x) { set_state_after(x, "destroyed"); }

/* ------------------------------------------------------------ migrate */

static void migrate_fail_back_run(struct na_action *x)
{
    /* The target could not restore: bring the job back here. */
    struct wlm_error e2 = {0};
    char console[1200];
    job_path(x->a, x->job, "console.log", console, sizeof(console));
    if (x->a->vm->ops->restore(x->a->vm, x->job, x->rec.save_path, console, &e2) == 0)
        unlink(x->rec.save_path);
}

static void migrate_fail_back_after(struct na_action *x)
{
    x->err.code = x->err.code ? x->err.code : -WLM_EIO;
    x->rec.save_path[0] = '\0';
    wlm_strlcpy(x->rec.state, "running", sizeof(x->rec.state));
    nodeagent_repo_put(x->a->repo, &x->rec, NULL);
}

static void migrate_timer_closed(uv_handle_t *h)
{
    struct na_action *x = h->data;
    free(h);
    na_pending_dec(x->a);
}

static void migrate_done(struct na_action *x, const char *mode)
{
    /* The job lives on the target now. Its disk image stays reserved here:
     * the restored domain still uses it (shared storage). */
    wlm_strlcpy(x->rec.state, "migrated", sizeof(x->rec.state));
    x->rec.save_path[0] = '\0';
    nodeagent_repo_put(x->a->repo, &x->rec, NULL);
    set_result(x, json_pack("{s:s,s:s,s:f}", "target", x->target, "mode", mode, "seconds",
                            wlm_now_mono() - x->t_start));
    action_finish(x);
}

static void migrate_poll(struct na_action *x);

static void on_migrate_status(const struct wlm_http_response *resp, const struct wlm_error *err,
                              void *ud)
{
    struct na_action *x = ud;
    struct nodeagent *a = x->a;
    if (a->stopping) {
        na_pending_dec(a);
        return;
    }
    json_t *o = NULL;
    const char *st = NULL;
    if (!(err && err->code) && resp->status < 300 &&
        (o = wlm_json_parse_object(resp->body, resp->body_len, NULL)))
        wlm_json_get_str(o, "status", 0, &st, NULL);
    if (st && !strcmp(st, "succeeded")) {
        migrate_done(x, "suspend-copy-restore");
    } else if ((st && !strcmp(st, "failed")) || (!(err && err->code) && resp->status >= 400) ||
               ++x->polls > 1200) {
        const char *detail = NULL;
        if (o)
            wlm_json_get_str(o, "detail", 0, &detail, NULL);
        wlm_error_set(&x->err, WLM_EIO, "restore on target %s failed: %s", x->target,
                      detail ? detail
                      : (err && err->code) ? err->msg
                                           : (resp && resp->body ? resp->body : "timeout"));
        queue_step(x, migrate_fail_back_run, migrate_fail_back_after);
    } else {
        migrate_poll(x);
    }
    json_decref(o);
    na_pending_dec(a);
}

static void on_migrate_timer(uv_timer_t *t)
{
    struct na_action *x = t->data;
    struct nodeagent *a = x->a;
    if (a->stopping || !a->client)
        return;
    char *url = wlm_asprintf("%s/v1/actions/%s", x->target, x->remote_id);
    na_pending_inc(a);
    if (wlm_http_client_request(a->client, "GET", url, a->cfg.token[0] ? a->cfg.token : NULL, NULL,
                                NULL, 0, 5000, on_migrate_status, x) < 0)
        na_pending_dec(a);
    free(url);
}

static void migrate_poll(struct na_action *x)
{
    if (!x->timer) {
        x->timer = calloc(1, sizeof(*x->timer));
        uv_timer_init(x->a->loop, x->timer);
        x->timer->data = x;
        na_pending_inc(x->a);
    }
    uv_timer_start(x->timer, on_migrate_timer, 100, 0);
}

static void on_migrate_posted(const struct wlm_http_response *resp, const struct wlm_error *err,
                              void *ud)
{
    struct na_action *x = ud;
    struct nodeagent *a = x->a;
    if (!a->stopping) {
        if ((err && err->code) || resp->status >= 300) {
            wlm_error_set(&x->err, WLM_EIO, "target %s refused the restore: %s", x->target,
                          (err && err->code) ? err->msg : resp->body);
            queue_step(x, migrate_fail_back_run, migrate_fail_back_after);
        } else {
            migrate_poll(x);
        }
    }
    na_pending_dec(a);
}

static void migrate_live_or_save_run(struct na_action *x)
{
    struct nodeagent *a = x->a;
    const char *uri = pstr(x, "dest_uri");
    x->stage = 0;
    if (uri && *uri) {
        struct wlm_error e2 = {0};
        if (a->vm->ops->migrate(a->vm, x->job, uri, &e2) == 0) {
            x->stage = 1; /* live migration done */
            return;
        }
        if (e2.code != -WLM_EUNSUPPORTED) {
            x->err = e2;
            return;
        }
    }
    a->vm->ops->suspend(a->vm, x->job, x->rec.save_path, &x->err);
}

static void migrate_after1(struct na_action *x)
{
    struct nodeagent *a = x->a;
    if (x->err.code)
        return;
    if (x->stage == 1) {
        x->done = 0;
        migrate_done(x, "live");
        return;
    }
    wlm_strlcpy(x->rec.state, "suspended", sizeof(x->rec.state));
    nodeagent_repo_put(a->repo, &x->rec, NULL);
    /* Ask the target agent to restore from shared storage, then poll it. */
    x->done = 0;
    snprintf(x->remote_id, sizeof(x->remote_id), "%s.restore", x->id);
    json_t *body = json_pack("{s:s,s:s,s:s,s:s}", "id", x->remote_id, "kind", "restore", "job",
                             x->job, "path", x->rec.save_path);
    if (x->rec.command[0])
        json_object_set_new(body, "command", json_string(x->rec.command));
    if (x->rec.sim_remaining >= 0) {
        json_object_set_new(body, "sim_seconds", json_real(x->rec.sim_remaining));
        json_object_set_new(body, "sim_total", json_real(x->rec.sim_total));
    }
    char *s = wlm_json_dumps(body);
    json_decref(body);
    char *url = wlm_asprintf("%s/v1/actions", x->target);
    na_pending_inc(a);
    if (wlm_http_client_request(a->client, "POST", url, a->cfg.token[0] ? a->cfg.token : NULL,
                                "application/json", s, strlen(s), 10000, on_migrate_posted,
                                x) < 0) {
        na_pending_dec(a);
        wlm_error_set(&x->err, WLM_EIO, "cannot reach target %s", x->target);
        queue_step(x, migrate_fail_back_run, migrate_fail_back_after);
    }
    free(url);
    free(s);
}

/* ------------------------------------------------------------ processes */

static void app_start_run(struct na_action *x)
{
    struct nodeagent *a = x->a;
    char dir[1200], log[1200];
    job_path(a, x->job, NULL, dir, sizeof(dir));
    mkdir(dir, 0755);
    job_path(a, x->job, "stdout.log", log, sizeof(log));
    struct nodeagent_spec s = {
        .id = x->job,
        .command = pstr(x, "command"),
        .console = log,
        .port = (int)pint(x, "port", 0),
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
    set_result(x, json_pack("{s:I,s:i,s:s,s:f}", "pid", (json_int_t)wi.pid, "port", s.port, "cap",
                            capmode, "seconds", wlm_now_mono() - t0));
}

/* ------------------------------------------------------------ power */

static void power_run(struct na_action *x)
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
    set_result(x, json_pack("{s:s,s:s}", "state", on ? "on" : "off", "mode",
                            cmd[0] ? "hook" : "simulated"));
}

static void power_after(struct na_action *x)
{
    if (!x->err.code)
        x->a->powered_on = !strcmp(x->kind, "power_on");
}

static void pool_hint_run(struct na_action *x)
{
    /* Applied when accepted; the result shows the pool as it now stands. */
    json_t *w = na_warm_json(x->a);
    set_result(x, w ? w : json_pack("{s:s}", "park", "none"));
}

/* ------------------------------------------------------------ accept */

static int check_state(struct na_action *x, struct wlm_error *err)
{
    struct nodeagent *a = x->a;
    const char *k = x->kind;
    if (kind_is_node(k)) {
        if (!strcmp(k, "pool_hint"))
            return na_warm_hint(a, json_object_get(x->params, "shapes"), err);
        if (!strcmp(k, "power_off")) {
            struct nodeagent_vm_rec *recs = NULL;
            size_t n = 0;
            nodeagent_repo_list(a->repo, &recs, &n, NULL);
            int live = 0;
            for (size_t i = 0; i < n; i++)
                live += rec_live(&recs[i]);
            free(recs);
            struct nodeagent_wl_info *procs = NULL;
            size_t np = 0;
            if (a->proc && a->proc->ops->list(a->proc, &procs, &np, NULL) == 0) {
                for (size_t i = 0; i < np; i++)
                    live += procs[i].state != NODEAGENT_WL_SHUTOFF;
                free(procs);
            }
            if (live)
                return wlm_error_set(err, WLM_ECONFLICT,
                                     "power_off: %d job(s) or instance(s) still run on this node; "
                                     "move, suspend or stop them first",
                                     live);
        }
        return 0;
    }
    if (kind_is_app(k)) {
        if (!strcmp(k, "app_start")) {
            const char *cmd = NULL;
            if (wlm_json_get_str(x->params, "command", 1, &cmd, err) < 0)
                return err->code;
            long long port = 0;
            if (wlm_json_get_int(x->params, "port", 0, 0, 65535, &port, err) < 0)
                return err->code;
            if (!a->powered_on)
                return wlm_error_set(err, WLM_ECONFLICT, "node %s is powered off", a->cfg.name);
        }
        double cap = 0;
        if (wlm_json_get_num(x->params, "cpu_cap_mhz", 0, 0, 1e9, &cap, err) < 0)
            return err->code;
        return 0;
    }
    if (!a->vm)
        return wlm_error_set(err, WLM_EUNSUPPORTED, "%s: this node has no hypervisor "
                                                    "(libvirt_uri none)", k);
    int have = nodeagent_repo_get(a->repo, x->job, &x->rec, NULL) == 0;
    x->have_rec = have;
    const char *st = have ? x->rec.state : "none";
    if (!strcmp(k, "start")) {
        const char *cmd = NULL;
        if (wlm_json_get_str(x->params, "command", 1, &cmd, err) < 0)
            return err->code;
        long long v;
        if (wlm_json_get_int(x->params, "vcpus", 0, 1, 64, &v, err) < 0 ||
            wlm_json_get_int(x->params, "memory_mb", 0, 32, 1 << 20, &v, err) < 0)
            return err->code;
        const char *jd = NULL;
        if (wlm_json_get_str(x->params, "job_dir", 0, &jd, err) < 0)
            return err->code;
        json_t *env = json_object_get(x->params, "env");
        if (env && !json_is_object(env))
            return wlm_error_setf(err, WLM_EINVAL, "env", "'env' must be an object of strings");
        const char *ek;
        json_t *ev;
        json_object_foreach(env, ek, ev)
        {
            int ok = json_is_string(ev) && *ek && !(*ek >= '0' && *ek <= '9');
            for (const char *p = ek; ok && *p; p++)
                ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                     (*p >= '0' && *p <= '9') || *p == '_';
            if (!ok)
                return wlm_error_setf(err, WLM_EINVAL, "env",
                                      "env '%s': names must be [A-Za-z_][A-Za-z0-9_]* and values "
                                      "strings", ek);
        }
        if (!a->powered_on)
            return wlm_error_set(err, WLM_ECONFLICT, "node %s is powered off: refusing to start "
                                                     "job %s", a->cfg.name, x->job);
        if (have && (rec_live(&x->rec) || !strcmp(st, "suspended")))
            return wlm_error_set(err, WLM_ECONFLICT, "job %s is already %s on this node", x->job,
                                 st);
        memset(&x->rec, 0, sizeof(x->rec));
        wlm_strlcpy(x->rec.job, x->job, sizeof(x->rec.job));
        snprintf(x->rec.domain, sizeof(x->rec.domain), "wlm-%s", x->job);
        wlm_strlcpy(x->rec.command, cmd, sizeof(x->rec.command));
        wlm_strlcpy(x->rec.state, "starting", sizeof(x->rec.state));
        x->rec.exit_status = -1;
        double sim = -1;
        if (wlm_json_get_num(x->params, "sim_seconds", 0, 0.001, 1e8, &sim, err) < 0)
            return err->code;
        if (sim > 0 && strncmp(a->cfg.libvirt_uri, "test:", 5) != 0)
            return wlm_error_setf(err, WLM_EINVAL, "sim_seconds",
                                  "sim_seconds is for simulated nodes (test:// driver) only");
        x->rec.sim_remaining = x->rec.sim_total = sim;
        assign_config(a, &x->rec);
        /* Record before starting: if the agent dies mid-start, reconcile
         * finds the domain and adopts it instead of starting it again. */
        return nodeagent_repo_put(a->repo, &x->rec, err);
    }
    if (!strcmp(k, "restore")) {
        const char *path = NULL;
        if (wlm_json_get_str(x->params, "path", 0, &path, err) < 0)
            return err->code;
        if (!a->powered_on)
            return wlm_error_set(err, WLM_ECONFLICT, "node %s is powered off: refusing to restore "
                                                     "job %s", a->cfg.name, x->job);
        if (have && rec_live(&x->rec))
            return wlm_error_set(err, WLM_ECONFLICT, "job %s is already %s on this node", x->job,
                                 st);
        if (!have) {
            memset(&x->rec, 0, sizeof(x->rec));
            wlm_strlcpy(x->rec.job, x->job, sizeof(x->rec.job));
            snprintf(x->rec.domain, sizeof(x->rec.domain), "wlm-%s", x->job);
            x->rec.exit_status = -1;
            const char *cmd = NULL;
            wlm_json_get_str(x->params, "command", 0, &cmd, NULL);
            wlm_strlcpy(x->rec.command, cmd ? cmd : "", sizeof(x->rec.command));
            x->rec.sim_remaining = x->rec.sim_total = -1;
        }
        /* A simulated job carries its remaining time from node to node. */
        if (wlm_json_get_num(x->params, "sim_seconds", 0, 0, 1e8, &x->rec.sim_remaining, err) < 0 ||
            wlm_json_get_num(x->params, "sim_total", 0, 0, 1e8, &x->rec.sim_total, err) < 0)
            return err->code;
        if (path)
            wlm_strlcpy(x->rec.save_path, path, sizeof(x->rec.save_path));
        else if (!x->rec.save_path[0])
            save_path_of(a, x->job, x->rec.save_path, sizeof(x->rec.save_path));
        if (access(x->rec.save_path, R_OK) != 0)
            return wlm_error_setf(err, WLM_ENOTFOUND, "path", "no save file for job %s at %s",
                                  x->job, x->rec.save_path);
        return 0;
    }
    if (!have)
        return wlm_error_set(err, WLM_ENOTFOUND, "unknown job '%s' on node %s", x->job,
                             a->cfg.name);
    if (!strcmp(k, "pause") && strcmp(st, "running"))
        return wlm_error_set(err, WLM_ECONFLICT, "cannot pause job %s: it is %s", x->job, st);
    if (!strcmp(k, "resume") && strcmp(st, "paused"))
        return wlm_error_set(err, WLM_ECONFLICT, "cannot resume job %s: it is %s", x->job, st);
    if ((!strcmp(k, "suspend") || !strcmp(k, "migrate") || !strcmp(k, "resize") ||
         !strcmp(k, "stop")) &&
        !rec_live(&x->rec))
        return wlm_error_set(err, WLM_ECONFLICT, "cannot %s job %s: it is %s", k, x->job, st);
    if (!strcmp(k, "suspend")) {
        const char *path = NULL;
        if (wlm_json_get_str(x->params, "path", 0, &path, err) < 0)
            return err->code;
        if (path)
            wlm_strlcpy(x->rec.save_path, path, sizeof(x->rec.save_path));
        else
            save_path_of(a, x->job, x->rec.save_path, sizeof(x->rec.save_path));
    }
    if (!strcmp(k, "migrate")) {
        const char *t = NULL, *u = NULL;
        if (wlm_json_get_str(x->params, "target", 0, &t, err) < 0 ||
            wlm_json_get_str(x->params, "dest_uri", 0, &u, err) < 0)
            return err->code;
        if ((!t || strncmp(t, "http://", 7)) && !(u && *u))
            return wlm_error_setf(err, WLM_EINVAL, "target",
                                  "migrate needs 'target' (the target agent's http:// URL) or "
                                  "'dest_uri' (a libvirt URI)");
        wlm_strlcpy(x->target, t ? t : "", sizeof(x->target));
        size_t tl = strlen(x->target);
        while (tl && x->target[tl - 1] == '/')
            x->target[--tl] = '\0';
        save_path_of(a, x->job, x->rec.save_path, sizeof(x->rec.save_path));
    }
    if (!strcmp(k, "resize")) {
        long long v;
        const char *pin = NULL;
        if (wlm_json_get_int(x->params, "vcpus", 0, 1, 64, &v, err) < 0 ||
            wlm_json_get_int(x->params, "cpu_shares", 0, 2, 262144, &v, err) < 0 ||
            wlm_json_get_int(x->params, "vcpu_quota", 0, -1, 1LL << 40, &v, err) < 0 ||
            wlm_json_get_int(x->params, "vcpu_period", 0, 1000, 1000000, &v, err) < 0 ||
            wlm_json_get_str(x->params, "pin", 0, &pin, err) < 0)
            return err->code;
        if (!json_object_get(x->params, "vcpus") && !pin &&
            !json_object_get(x->params, "cpu_shares") &&
            !json_object_get(x->params, "vcpu_quota") &&
            !json_object_get(x->params, "vcpu_period"))
            return wlm_error_set(err, WLM_EINVAL, "resize needs one of vcpus, pin, cpu_shares, "
                                                  "vcpu_quota, vcpu_period");
    }
    return 0;
}

/* Keep the newest 4096 actions for idempotent retries; older finished ones
 * go once no callback can still refer to them (a minute after the end). */
static void prune_actions(struct nodeagent *a, double now)
{
    size_t n = 0;
    struct na_action **pp = &a->actions;
    while (*pp) {
        struct na_action *x = *pp;
        if (++n > 4096 && x->t_done > 0 && now - x->t_done > 60 && !x->timer) {
            *pp = x->next;
            action_free(x);
        } else {
            pp = &x->next;
        }
    }
}

static void h_post_action(struct wlm_http_req *req, void *ud)
{
    struct nodeagent *a = ud;
    struct wlm_error err = {0};
    json_t *body = wlm_json_parse_object(req->body, req->body_len, &err);
    if (!body) {
        wlm_http_respond_werr(req, &err);
        return;
    }
    const char *id = NULL, *kind = NULL, *job = NULL, *inst = NULL;
    if (wlm_json_get_str(body, "id", 1, &id, &err) < 0 ||
        wlm_json_get_str(body, "kind", 1, &kind, &err) < 0 ||
        wlm_json_get_str(body, "job", 0, &job, &err) < 0 ||
        wlm_json_get_str(body, "instance", 0, &inst, &err) < 0)
        goto bad;
    if (!valid_id(id)) {
        wlm_error_setf(&err, WLM_EINVAL, "id", "action id '%s' must be 1-100 of [A-Za-z0-9._-]",
                       id);
        goto bad;
    }
    struct na_action *old = find_action(a, id);
    if (old) {
        /* Idempotent: the first action's state, whatever this body says. */
        wlm_http_respond_json(req, !strcmp(old->status, "succeeded") ||
                                           !strcmp(old->status, "failed")
                                       ? 200
                                       : 202,
                              action_json(old));
        json_decref(body);
        return;
    }
    int known = 0;
    for (size_t i = 0; KINDS[i]; i++)
        known |= !strcmp(KINDS[i], kind);
    if (!known) {
        wlm_error_setf(&err, WLM_EINVAL, "kind",
                       "unknown action kind '%s' (start, pause, resume, suspend, restore, migrate, "
                       "resize, stop, destroy, app_start, app_stop, app_resize, power_off, "
                       "power_on, pool_hint)",
                       kind);
        goto bad;
    }
    const char *target = kind_is_app(kind) ? inst : job;
    const char *fname = kind_is_app(kind) ? "instance" : "job";
    if (!kind_is_node(kind)) {
        if (!target) {
            wlm_error_setf(&err, WLM_EINVAL, fname, "action '%s' needs '%s'", kind, fname);
            goto bad;
        }
        if (!valid_id(target)) {
            wlm_error_setf(&err, WLM_EINVAL, fname, "'%s' must be 1-100 of [A-Za-z0-9._-]",
                           fname);
            goto bad;
        }
        if (na_job_busy(a, target)) {
            wlm_error_set(&err, WLM_ECONFLICT, "another action on %s '%s' is still running", fname,
                          target);
            goto bad;
        }
    }
    struct na_action *x = calloc(1, sizeof(*x));
    if (!x) {
        json_decref(body);
        wlm_http_respond_error(req, 500, "internal", "out of memory");
        return;
    }
    x->a = a;
    wlm_strlcpy(x->id, id, sizeof(x->id));
    wlm_strlcpy(x->kind, kind, sizeof(x->kind));
    wlm_strlcpy(x->job, target ? target : "", sizeof(x->job));
    x->params = body;
    if (check_state(x, &err) < 0) {
        action_free(x);
        wlm_http_respond_werr(req, &err);
        return;
    }
    x->t_accept = x->t_start = wlm_now_mono();
    wlm_strlcpy(x->status, "running", sizeof(x->status));
    x->next = a->actions;
    a->actions = x;
    prune_actions(a, x->t_accept);
    wlm_info(NA_COMP, "action accepted", "id=%s kind=%s %s=%s", x->id, x->kind, fname, x->job);
    if (!strcmp(kind, "start"))
        queue_step(x, start_run, start_after);
    else if (!strcmp(kind, "pause"))
        queue_step(x, pause_run, pause_after);
    else if (!strcmp(kind, "resume"))
        queue_step(x, resume_run, resume_after);
    else if (!strcmp(kind, "suspend"))
        queue_step(x, suspend_run, suspend_after);
    else if (!strcmp(kind, "restore"))
        queue_step(x, restore_run, restore_after);
    else if (!strcmp(kind, "migrate"))
        queue_step(x, migrate_live_or_save_run, migrate_after1);
    else if (!strcmp(kind, "resize") || !strcmp(kind, "app_resize"))
        queue_step(x, resize_run, NULL);
    else if (!strcmp(kind, "stop") || !strcmp(kind, "app_stop"))
        queue_step(x, stop_run, stop_after);
    else if (!strcmp(kind, "destroy"))
        queue_step(x, destroy_run, destroy_after);
    else if (!strcmp(kind, "app_start"))
        queue_step(x, app_start_run, NULL);
    else if (!strcmp(kind, "pool_hint"))
        queue_step(x, pool_hint_run, NULL);
    else
        queue_step(x, power_run, power_after);
    json_t *resp = json_pack("{s:s,s:s}", "id", x->id, "status", "accepted");
    wlm_http_respond_json(req, 202, resp);
    return;
bad:
    json_decref(body);
    wlm_http_respond_werr(req, &err);
}

static void h_get_action(struct wlm_http_req *req, void *ud)
{
    struct nodeagent *a = ud;
    struct na_action *x = req->nparams ? find_action(a, req->params[0]) : NULL;
    if (!x) {
        wlm_http_respond_error(req, 404, "not_found", "no action '%s' on node %s",
                               req->nparams ? req->params[0] : "", a->cfg.name);
        return;
    }
    wlm_http_respond_json(req, 200, action_json(x));
}

/* ------------------------------------------------------------ jobs */

static json_t *rec_json(const struct nodeagent_vm_rec *r)
{
    json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "job", r->job, "domain", r->domain,
                          "uuid", r->uuid, "state", r->state, "image", r->image, "hostname",
                          r->hostname, "mac", r->mac, "ip", r->ip);
    if (r->exit_status >= 0)
        json_object_set_new(o, "exit_status", json_integer(r->exit_status));
    if (r->save_path[0])
        json_object_set_new(o, "save_path", json_string(r->save_path));
    if (r->sim_total > 0) {
        double done = 1.0 - (r->sim_remaining > 0 ? r->sim_remaining : 0) / r->sim_total;
        json_object_set_new(o, "sim_remaining", json_real(r->sim_remaining));
        json_object_set_new(o, "progress", json_real(done < 0 ? 0 : done));
        json_object_set_new(o, "progress_source", json_string("simulated"));
    }
    return o;
}

/* The last "WLM-PROGRESS <0..100>" a job printed, as a fraction; -1 when
 * none. Reads the tail of the console log only. */
static double console_progress(struct nodeagent *a, const char *job)
{
    char path[1200];
    job_path(a, job, "console.log", path, sizeof(path));
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    char buf[16385];
    if (fseek(f, 0, SEEK_END) == 0) {
        long sz = ftell(f);
        fseek(f, sz > 16384 ? sz - 16384 : 0, SEEK_SET);
    }
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    for (size_t i = 0; i < n; i++)
        if (!buf[i])
            buf[i] = ' ';
    double best = -1;
    for (const char *p = buf; (p = strstr(p, "WLM-PROGRESS ")); p += 13) {
        char *end;
        double v = strtod(p + 13, &end);
        if (end != p + 13 && v >= 0 && v <= 100)
            best = v / 100.0;
    }
    return best;
}

static void add_progress(struct nodeagent *a, const struct nodeagent_vm_rec *r, json_t *o)
{
    if (r->sim_total > 0)
        return; /* simulated: rec_json has it */
    double p = console_progress(a, r->job);
    if (p >= 0) {
        json_object_set_new(o, "progress", json_real(p));
        json_object_set_new(o, "progress_source", json_string("guest"));
    }
}

json_t *na_jobs_json(struct nodeagent *a)
{
    json_t *o = json_object();
    struct nodeagent_vm_rec *recs = NULL;
    size_t n = 0;
    if (nodeagent_repo_list(a->repo, &recs, &n, NULL) < 0)
        return o;
    for (size_t i = 0; i < n; i++) {
        json_t *j = rec_json(&recs[i]);
        json_object_del(j, "job");
        json_object_set_new(j, "job_state", json_string(recs[i].state));
        json_object_del(j, "state");
        if (!strcmp(recs[i].state, "running") || !strcmp(recs[i].state, "paused"))
            add_progress(a, &recs[i], j);
        if (strcmp(recs[i].state, "destroyed") && strcmp(recs[i].state, "migrated"))
            json_object_set_new(o, recs[i].job, j);
        else
            json_decref(j);
    }
    free(recs);
    return o;
}

static char *read_console(struct nodeagent *a, const char *job, size_t *len)
{
    char path[1200];
    job_path(a, job, "console.log", path, sizeof(path));
    FILE *f = fopen(path, "rb");
    *len = 0;
    if (!f)
        return NULL;
    struct wlm_buf b;
    wlm_buf_init(&b);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0 && b.len < (16u << 20))
        wlm_buf_append(&b, buf, n);
    fclose(f);
    *len = b.len;
    return wlm_buf_steal(&b);
}

static void h_get_job(struct wlm_http_req *req, void *ud)
{
    struct nodeagent *a = ud;
    struct nodeagent_vm_rec r;
    struct wlm_error err = {0};
    if (nodeagent_repo_get(a->repo, req->params[0], &r, &err) < 0) {
        wlm_http_respond_werr(req, &err);
        return;
    }
    json_t *o = rec_json(&r);
    size_t len;
    char *text = read_console(a, r.job, &len);
    if (text) {
        struct nodeagent_console_state cs;
        char *out = NULL;
        nodeagent_console_parse(text, len, &cs, &out);
        json_object_set_new(o, "output", json_string(out ? out : ""));
        add_progress(a, &r, o);
        if (cs.exit_status >= 0)
            json_object_set_new(o, "console_exit_status", json_integer(cs.exit_status));
        free(out);
        free(text);
    }
    wlm_http_respond_json(req, 200, o);
}

static void h_list_jobs(struct wlm_http_req *req, void *ud)
{
    struct nodeagent *a = ud;
    struct nodeagent_vm_rec *recs = NULL;
    size_t n = 0;
    struct wlm_error err = {0};
    if (nodeagent_repo_list(a->repo, &recs, &n, &err) < 0) {
        wlm_http_respond_werr(req, &err);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, rec_json(&recs[i]));
    free(recs);
    wlm_http_respond_json(req, 200, json_pack("{s:o}", "jobs", arr));
}

/* A job whose domain is gone while we believe it runs has finished: its
 * exit status comes from the console log ("WLM-EXIT n"). */
struct check_job {
    uv_work_t w;
    struct nodeagent *a;
    char job[128];
    int gone;
    char image[512];
};

static void check_run(uv_work_t *w)
{
    struct check_job *c = w->data;
    struct nodeagent_wl_info wi = {0};
    struct wlm_error err = {0};
    int r = c->a->vm->ops->info(c->a->vm, c->job, &wi, &err);
    c->gone = r == -WLM_ENOTFOUND || (r == 0 && wi.state == NODEAGENT_WL_SHUTOFF);
}

static void release_after(uv_work_t *w, int status)
{
    (void)status;
    struct na_action *x = w->data;
    struct nodeagent *a = x->a;
    action_free(x);
    na_pending_dec(a);
}

static void release_run(uv_work_t *w)
{
    release_image_run(w->data);
}

static void check_after(uv_work_t *w, int status)
{
    (void)status;
    struct check_job *c = w->data;
    struct nodeagent *a = c->a;
    struct nodeagent_vm_rec r;
    if (!a->stopping && c->gone && !na_job_busy(a, c->job) &&
        nodeagent_repo_get(a->repo, c->job, &r, NULL) == 0 && rec_live(&r)) {
        size_t len;
        char *text = read_console(a, c->job, &len);
        struct nodeagent_console_state cs = {.exit_status = -1};
        if (text)
            nodeagent_console_parse(text, len, &cs, NULL);
        free(text);
        r.exit_status = cs.exit_status;
        wlm_strlcpy(r.state, cs.exit_status == 0 ? "finished" : "failed", sizeof(r.state));
        nodeagent_repo_put(a->repo, &r, NULL);
        wlm_info(NA_COMP, "job ended", "job=%s state=%s exit_status=%d", r.job, r.state,
                 r.exit_status);
        /* Return its image to the pool (scrub runs off the loop). */
        if (a->pool && r.image[0]) {
            struct na_action *x = calloc(1, sizeof(*x));
            if (x) {
                x->a = a;
                x->image = wlm_strdup(r.image);
                x->work.data = x;
                na_pending_inc(a);
                if (uv_queue_work(a->loop, &x->work, release_run, release_after) != 0) {
                    na_pending_dec(a);
                    action_free(x);
                }
            }
        }
    }
    free(c);
    na_pending_dec(a);
}

static void check_job(struct nodeagent *a, const char *job)
{
    if (!a->vm || a->stopping)
        return;
    struct check_job *c = calloc(1, sizeof(*c));
    if (!c)
        return;
    c->a = a;
    wlm_strlcpy(c->job, job, sizeof(c->job));
    c->w.data = c;
    na_pending_inc(a);
    if (uv_queue_work(a->loop, &c->w, check_run, check_after) != 0) {
        free(c);
        na_pending_dec(a);
    }
}

void na_handle_event(struct nodeagent *a, const struct na_event *ev)
{
    wlm_debug(NA_COMP, "domain event", "job=%s event=%d detail=%d stopped=%d", ev->id, ev->event,
              ev->detail, ev->stopped);
    if (ev->stopped)
        check_job(a, ev->id);
}

/* Heartbeat hook: any live record without a live domain gets checked. */
void na_check_jobs(struct nodeagent *a, const struct nodeagent_wl_info *live, size_t n)
{
    struct nodeagent_vm_rec *recs = NULL;
    size_t nr = 0;
    if (nodeagent_repo_list(a->repo, &recs, &nr, NULL) < 0)
        return;
    for (size_t i = 0; i < nr; i++) {
        if (!rec_live(&recs[i]) || na_job_busy(a, recs[i].job))
            continue;
        int found = 0;
        for (size_t j = 0; j < n && !found; j++)
            found = !strcmp(live[j].id, recs[i].job) && live[j].state != NODEAGENT_WL_SHUTOFF;
        if (!found)
            check_job(a, recs[i].job);
    }
    free(recs);
}

int na_reconcile(struct nodeagent *a, struct wlm_error *err)
{
    if (!a->vm)
        return 0;
    struct nodeagent_vm_rec *recs = NULL;
    struct nodeagent_wl_info *live = NULL;
    size_t nr = 0, nl = 0;
    if (nodeagent_repo_list(a->repo, &recs, &nr, err) < 0)
        return err ? err->code : -WLM_EIO;
    if (a->vm->ops->list(a->vm, &live, &nl, err) < 0) {
        free(recs);
        return err ? err->code : -WLM_EIO;
    }
    struct nodeagent_reconcile rc;
    if (nodeagent_reconcile_compute(recs, nr, live, nl, &rc) < 0) {
        free(recs);
        free(live);
        return wlm_error_set(err, ENOMEM, "out of memory");
    }
    int adopted = 0, lost = 0;
    for (size_t i = 0; i < nr; i++) {
        struct nodeagent_vm_rec *r = &recs[i];
        switch (rc.verdict[i]) {
        case NODEAGENT_ADOPT:
            adopted++;
            nodeagent_pool_mark_used(a->pool, r->image);
            if (!strcmp(r->state, "starting") && rc.live_state[i] == NODEAGENT_WL_PAUSED) {
                /* The agent died between creating the domain (paused) and
                 * letting it run: finish the start rather than leave the job
                 * frozen. */
                struct wlm_error e2 = {0};
                /* "already running": it was QEMU still starting up (libvirt
                 * shows that as paused), which ends by itself. */
                if (a->vm->ops->resume(a->vm, r->job, &e2) == 0 ||
                    strstr(e2.msg, "already running"))
                    rc.live_state[i] = NODEAGENT_WL_RUNNING;
                else
                    wlm_warn(NA_COMP, "reconcile: could not resume a half-started job",
                             "job=%s error=\"%s\"", r->job, e2.msg);
            }
            wlm_strlcpy(r->state, rc.live_state[i] == NODEAGENT_WL_PAUSED ? "paused" : "running",
                        sizeof(r->state));
            nodeagent_repo_put(a->repo, r, NULL);
            wlm_info(NA_COMP, "reconcile: adopted running job", "job=%s state=%s", r->job,
                     r->state);
            break;
        case NODEAGENT_LOST:
            if (!strcmp(r->state, "starting")) {
                /* We died before its domain existed: it never ran, so it did
                 * not fail either. "lost" lets the controller place it again. */
                lost++;
                wlm_strlcpy(r->state, "lost", sizeof(r->state));
                nodeagent_repo_put(a->repo, r, NULL);
                wlm_warn(NA_COMP, "reconcile: start interrupted before the domain existed",
                         "job=%s", r->job);
                break;
            }
            /* Its domain is gone: it ended while we were away. The console
             * tells how; check_job records it. */
            lost++;
            nodeagent_pool_mark_used(a->pool, r->image);
            check_job(a, r->job);
            break;
        case NODEAGENT_SUSPENDED:
        case NODEAGENT_KEEP:
            if (!strcmp(r->state, "suspended") || !strcmp(r->state, "migrated"))
                nodeagent_pool_mark_used(a->pool, r->image);
            break;
        }
    }
    free(a->orphans);
    a->orphans = NULL;
    a->norphans = rc.norphans;
    if (rc.norphans) {
        a->orphans = calloc(rc.norphans, sizeof(*a->orphans));
        for (size_t i = 0; a->orphans && i < rc.norphans; i++) {
            wlm_strlcpy(a->orphans[i], rc.orphans[i], sizeof(a->orphans[i]));
            wlm_warn(NA_COMP, "reconcile: orphan domain not in the repository (left alone)",
                     "domain=wlm-%s", rc.orphans[i]);
        }
    }
    wlm_info(NA_COMP, "reconcile done", "records=%zu live=%zu adopted=%d ended=%d orphans=%zu", nr,
             nl, adopted, lost, rc.norphans);
    nodeagent_reconcile_fini(&rc);
    free(recs);
    free(live);
    return 0;
}

void na_actions_routes(struct nodeagent *a)
{
    wlm_http_server_route(a->http, "POST", "/v1/actions", 1, h_post_action, a);
    wlm_http_server_route(a->http, "GET", "/v1/actions/:id", 1, h_get_action, a);
    wlm_http_server_route(a->http, "GET", "/v1/jobs", 1, h_list_jobs, a);
    wlm_http_server_route(a->http, "GET", "/v1/jobs/:id", 1, h_get_job, a);
}

/* Simulated jobs (test driver): running time counts down between
 * heartbeats; at zero the domain goes and the job is finished, exit 0. */
struct sim_end {
    uv_work_t w;
    struct nodeagent *a;
    struct nodeagent_vm_rec rec;
};

static void sim_end_run(uv_work_t *w)
{
    struct sim_end *e = w->data;
    e->a->vm->ops->destroy(e->a->vm, e->rec.job, NULL);
    if (e->a->pool && e->rec.image[0])
        nodeagent_pool_release(e->a->pool, e->rec.image, NULL);
}

static void sim_end_after(uv_work_t *w, int status)
{
    (void)status;
    struct sim_end *e = w->data;
    struct nodeagent *a = e->a;
    struct nodeagent_vm_rec r;
    if (nodeagent_repo_get(a->repo, e->rec.job, &r, NULL) == 0 && !strcmp(r.state, "finishing")) {
        wlm_strlcpy(r.state, "finished", sizeof(r.state));
        r.exit_status = 0;
        r.sim_remaining = 0;
        nodeagent_repo_put(a->repo, &r, NULL);
        char path[1200];
        job_path(a, r.job, "console.log", path, sizeof(path));
        FILE *f = fopen(path, "a");
        if (f) {
            fprintf(f, "WLM-START job=%s\nsimulated job ran %.1f s\nWLM-EXIT 0\n", r.job,
                    r.sim_total);
            fclose(f);
        }
        wlm_info(NA_COMP, "job ended", "job=%s state=finished exit_status=0 simulated=1", r.job);
    }
    free(e);
    na_pending_dec(a);
}

void na_sim_tick(struct nodeagent *a, double dt)
{
    if (!a->vm || dt <= 0)
        return;
    struct nodeagent_vm_rec *recs = NULL;
    size_t n = 0;
    if (nodeagent_repo_list(a->repo, &recs, &n, NULL) < 0)
        return;
    for (size_t i = 0; i < n; i++) {
        struct nodeagent_vm_rec *r = &recs[i];
        if (strcmp(r->state, "running") || r->sim_remaining < 0 || na_job_busy(a, r->job))
            continue;
        r->sim_remaining -= dt;
        if (r->sim_remaining > 0) {
            nodeagent_repo_put(a->repo, r, NULL);
            continue;
        }
        /* Not "running" any more, so the heartbeat's check for vanished
         * domains leaves it to us. */
        wlm_strlcpy(r->state, "finishing", sizeof(r->state));
        nodeagent_repo_put(a->repo, r, NULL);
        struct sim_end *e = calloc(1, sizeof(*e));
        if (!e)
            continue;
        e->a = a;
        e->rec = *r;
        e->w.data = e;
        na_pending_inc(a);
        if (uv_queue_work(a->loop, &e->w, sim_end_run, sim_end_after) != 0) {
            free(e);
            na_pending_dec(a);
        }
    }
    free(recs);
}
