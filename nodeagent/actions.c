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

#include "actions_int.h"

static const char *const KINDS[] = {"start",    "pause",      "resume",    "suspend",  "restore",
                                    "migrate",  "resize",     "stop",      "destroy",  "app_start",
                                    "app_stop", "app_resize", "power_off", "power_on", "pool_hint",
                                    "adopt",    NULL};

int na_kind_is_app(const char *k)
{
    return !strncmp(k, "app_", 4);
}
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
        json_object_set_new(o, na_kind_is_app(x->kind) ? "instance" : "job", json_string(x->job));
    json_object_set_new(o, "status", json_string(x->status));
    json_object_set_new(o, "node", json_string(x->a->cfg.name));
    if (x->result)
        json_object_set_new(o, "result", json_deep_copy(x->result));
    if (!strcmp(x->status, "failed")) {
        json_object_set_new(o, "error",
                            json_string(x->lost ? "lost" : wlm_error_name(x->err.code)));
        json_object_set_new(o, "detail", json_string(x->err.msg));
    }
    if (x->t_done > 0)
        json_object_set_new(o, "seconds", json_real(x->t_done - x->t_start));
    if (x->recovered)
        json_object_set_new(o, "recovered", json_true());
    return o;
}

/* Record the action (and its outcome once it has one) in the agent's
 * SQLite state, so a retry after a restart gets the same answer. */
static void persist(struct na_action *x)
{
    struct nodeagent_action_rec r = {0};
    wlm_strlcpy(r.id, x->id, sizeof(r.id));
    wlm_strlcpy(r.kind, x->kind, sizeof(r.kind));
    wlm_strlcpy(r.target, x->job, sizeof(r.target));
    wlm_strlcpy(r.status, x->status, sizeof(r.status));
    r.params = wlm_json_dumps(x->params);
    json_t *doc = NULL;
    if (strcmp(x->status, "running")) {
        doc = action_json(x);
        r.doc = wlm_json_dumps(doc);
    }
    struct wlm_error err = {0};
    if (nodeagent_repo_action_put(x->a->repo, &r, &err) < 0)
        wlm_warn(NA_COMP, "action not recorded", "id=%s error=\"%s\"", x->id, err.msg);
    json_decref(doc);
    nodeagent_action_rec_fini(&r);
}

void na_action_free(struct na_action *x)
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
        na_action_free(x);
        x = n;
    }
    a->actions = NULL;
}

void na_set_result(struct na_action *x, json_t *r)
{
    json_decref(x->result);
    x->result = r;
}

void na_migrate_timer_closed(uv_handle_t *h);

/* ------------------------------------------------------------ completion */

struct notify {
    struct nodeagent *a;
    char id[128];
};

static void on_notify_done(const struct wlm_http_response *resp, const struct wlm_error *err,
                           void *ud)
{
    struct notify *n = ud;
    if (err && err->code)
        wlm_warn(NA_COMP, "completion notification not delivered", "action=%s error=\"%s\"", n->id,
                 err->msg);
    else if (resp->status >= 300)
        wlm_debug(NA_COMP, "controller refused completion notification", "action=%s status=%d",
                  n->id, resp->status);
    na_pending_dec(n->a);
    free(n);
}

void na_notify_complete(struct nodeagent *a, const char *id, json_t *doc)
{
    if (a->stopping || !a->client || !a->cfg.controller[0])
        return;
    struct notify *n = calloc(1, sizeof(*n));
    if (!n)
        return;
    n->a = a;
    wlm_strlcpy(n->id, id, sizeof(n->id));
    char *s = wlm_json_dumps(doc);
    char *url = wlm_asprintf("%s/v1/actions/%s/complete", a->cfg.controller, id);
    na_pending_inc(a);
    if (wlm_http_client_request(a->client, "POST", url, a->cfg.token[0] ? a->cfg.token : NULL,
                                "application/json", s, strlen(s), 5000, on_notify_done, n) < 0) {
        na_pending_dec(a);
        free(n);
    }
    free(url);
    free(s);
}

void na_action_finish(struct na_action *x)
{
    struct nodeagent *a = x->a;
    x->t_done = wlm_now_mono();
    if (x->timer) {
        uv_timer_stop(x->timer);
        uv_close((uv_handle_t *)x->timer, na_migrate_timer_closed);
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
    persist(x);
    json_t *body = action_json(x);
    na_notify_complete(a, x->id, body);
    json_decref(body);
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
        na_action_finish(x);
    na_pending_dec(a);
}

void na_queue_step(struct na_action *x, void (*run)(struct na_action *),
                   void (*after)(struct na_action *))
{
    x->run = run;
    x->after = after;
    x->work.data = x;
    na_pending_inc(x->a);
    if (uv_queue_work(x->a->loop, &x->work, work_run, work_after) != 0) {
        wlm_error_set(&x->err, WLM_EINTERNAL, "cannot queue work");
        na_pending_dec(x->a);
        na_action_finish(x);
    }
}

/* ------------------------------------------------------------ helpers */

const char *na_pstr(struct na_action *x, const char *k)
{
    const char *s = NULL;
    wlm_json_get_str(x->params, k, 0, &s, NULL);
    return s;
}

long long na_pint(struct na_action *x, const char *k, long long def)
{
    long long v = def;
    wlm_json_get_int(x->params, k, 0, -(1LL << 40), 1LL << 40, &v, NULL);
    return v;
}

void na_job_path(struct nodeagent *a, const char *job, const char *file, char *out, size_t n)
{
    snprintf(out, n, "%s/jobs/%s%s%s", a->cfg.state_dir, job, file ? "/" : "", file ? file : "");
}

void na_save_path_of(struct nodeagent *a, const char *job, char *out, size_t n)
{
    snprintf(out, n, "%s/%s.save", a->cfg.shared_dir, job);
}

int na_rec_live(const struct nodeagent_vm_rec *r)
{
    return !strcmp(r->state, "running") || !strcmp(r->state, "paused") ||
           !strcmp(r->state, "starting");
}

/* Configuration management: hostname, MAC and IP from a pool of values. The
 * index is the lowest one not held by a live job, so values are reused only
 * after their job is gone. */
void na_assign_config(struct nodeagent *a, struct nodeagent_vm_rec *r)
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
            taken = (na_rec_live(&recs[i]) || !strcmp(recs[i].state, "suspended")) &&
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

void na_release_image_run(struct na_action *x)
{
    if (x->a->pool && x->image && *x->image)
        nodeagent_pool_release(x->a->pool, x->image, NULL);
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
                live += na_rec_live(&recs[i]);
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
    if (na_kind_is_app(k)) {
        if (!strcmp(k, "app_start")) {
            const char *cmd = NULL;
            if (wlm_json_get_str(x->params, "command", 1, &cmd, err) < 0)
                return err->code;
            long long port = 0;
            if (wlm_json_get_int(x->params, "port", 0, 0, 65535, &port, err) < 0)
                return err->code;
            const char *user = NULL;
            if (wlm_json_get_str(x->params, "user", 0, &user, err) < 0)
                return err->code;
            int uok = !user || (*user && strlen(user) <= 32 &&
                                ((*user >= 'a' && *user <= 'z') || *user == '_'));
            for (const char *p = user; uok && p && *p; p++)
                uok =
                    (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '-';
            if (!uok)
                return wlm_error_setf(err, WLM_EINVAL, "user",
                                      "user '%s' must be 1-32 of [a-z0-9_-], starting with a "
                                      "letter or '_'",
                                      user);
            if (!a->powered_on)
                return wlm_error_set(err, WLM_ECONFLICT, "node %s is powered off", a->cfg.name);
        }
        double cap = 0;
        if (wlm_json_get_num(x->params, "cpu_cap_mhz", 0, 0, 1e9, &cap, err) < 0)
            return err->code;
        return 0;
    }
    if (!a->vm)
        return wlm_error_set(err, WLM_EUNSUPPORTED,
                             "%s: this node has no hypervisor "
                             "(libvirt_uri none)",
                             k);
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
                                      "strings",
                                      ek);
        }
        if (!a->powered_on)
            return wlm_error_set(err, WLM_ECONFLICT,
                                 "node %s is powered off: refusing to start "
                                 "job %s",
                                 a->cfg.name, x->job);
        if (have && (na_rec_live(&x->rec) || !strcmp(st, "suspended")))
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
        na_assign_config(a, &x->rec);
        /* Record before starting: if the agent dies mid-start, reconcile
         * finds the domain and adopts it instead of starting it again. */
        return nodeagent_repo_put(a->repo, &x->rec, err);
    }
    if (!strcmp(k, "adopt")) {
        /* The target side of a live migration: the domain is already here. */
        const char *f[] = {"command", "hostname", "ip", "mac", "image"};
        const char *v[5] = {0};
        for (int i = 0; i < 5; i++)
            if (wlm_json_get_str(x->params, f[i], 0, &v[i], err) < 0)
                return err->code;
        if (have && na_rec_live(&x->rec))
            return wlm_error_set(err, WLM_ECONFLICT, "job %s is already %s on this node", x->job,
                                 st);
        memset(&x->rec, 0, sizeof(x->rec));
        wlm_strlcpy(x->rec.job, x->job, sizeof(x->rec.job));
        snprintf(x->rec.domain, sizeof(x->rec.domain), "wlm-%s", x->job);
        x->rec.exit_status = -1;
        x->rec.sim_remaining = x->rec.sim_total = -1;
        wlm_strlcpy(x->rec.command, v[0] ? v[0] : "", sizeof(x->rec.command));
        wlm_strlcpy(x->rec.hostname, v[1] ? v[1] : "", sizeof(x->rec.hostname));
        wlm_strlcpy(x->rec.ip, v[2] ? v[2] : "", sizeof(x->rec.ip));
        wlm_strlcpy(x->rec.mac, v[3] ? v[3] : "", sizeof(x->rec.mac));
        wlm_strlcpy(x->rec.image, v[4] ? v[4] : "", sizeof(x->rec.image));
        wlm_strlcpy(x->rec.state, "starting", sizeof(x->rec.state));
        return 0;
    }
    if (!strcmp(k, "restore")) {
        const char *path = NULL;
        if (wlm_json_get_str(x->params, "path", 0, &path, err) < 0)
            return err->code;
        if (!a->powered_on)
            return wlm_error_set(err, WLM_ECONFLICT,
                                 "node %s is powered off: refusing to restore "
                                 "job %s",
                                 a->cfg.name, x->job);
        if (have && na_rec_live(&x->rec))
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
            na_save_path_of(a, x->job, x->rec.save_path, sizeof(x->rec.save_path));
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
        !na_rec_live(&x->rec))
        return wlm_error_set(err, WLM_ECONFLICT, "cannot %s job %s: it is %s", k, x->job, st);
    if (!strcmp(k, "suspend")) {
        const char *path = NULL;
        if (wlm_json_get_str(x->params, "path", 0, &path, err) < 0)
            return err->code;
        if (path)
            wlm_strlcpy(x->rec.save_path, path, sizeof(x->rec.save_path));
        else
            na_save_path_of(a, x->job, x->rec.save_path, sizeof(x->rec.save_path));
    }
    if (!strcmp(k, "migrate")) {
        const char *t = NULL, *u = NULL;
        if (wlm_json_get_str(x->params, "target", 0, &t, err) < 0 ||
            wlm_json_get_str(x->params, "dest_uri", 0, &u, err) < 0)
            return err->code;
        if ((!t || (strncmp(t, "http://", 7) && strncmp(t, "https://", 8))) && !(u && *u))
            return wlm_error_setf(err, WLM_EINVAL, "target",
                                  "migrate needs 'target' (the target agent's http(s):// URL) or "
                                  "'dest_uri' (a libvirt URI)");
        wlm_strlcpy(x->target, t ? t : "", sizeof(x->target));
        size_t tl = strlen(x->target);
        while (tl && x->target[tl - 1] == '/')
            x->target[--tl] = '\0';
        na_save_path_of(a, x->job, x->rec.save_path, sizeof(x->rec.save_path));
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
            !json_object_get(x->params, "vcpu_quota") && !json_object_get(x->params, "vcpu_period"))
            return wlm_error_set(err, WLM_EINVAL,
                                 "resize needs one of vcpus, pin, cpu_shares, "
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
            na_action_free(x);
        } else {
            pp = &x->next;
        }
    }
}

/* An action of an earlier run of the agent, from its SQLite state: its
 * recorded outcome. NULL when unknown. */
static json_t *stored_action(struct nodeagent *a, const char *id, int *finished)
{
    struct nodeagent_action_rec r;
    if (nodeagent_repo_action_get(a->repo, id, &r, NULL) < 0)
        return NULL;
    json_t *o = r.doc && *r.doc ? json_loads(r.doc, 0, NULL) : NULL;
    *finished = o != NULL;
    if (!o)
        o = json_pack("{s:s,s:s,s:s,s:s}", "id", r.id, "kind", r.kind, "status", r.status, "node",
                      a->cfg.name);
    nodeagent_action_rec_fini(&r);
    return o;
}

struct na_action *na_action_new(struct nodeagent *a, const char *id, const char *kind,
                                const char *target, json_t *params)
{
    struct na_action *x = calloc(1, sizeof(*x));
    if (!x)
        return NULL;
    x->a = a;
    wlm_strlcpy(x->id, id, sizeof(x->id));
    wlm_strlcpy(x->kind, kind, sizeof(x->kind));
    wlm_strlcpy(x->job, target ? target : "", sizeof(x->job));
    x->params = params;
    return x;
}

int na_action_check(struct na_action *x, struct wlm_error *err)
{
    return check_state(x, err);
}

void na_action_launch(struct na_action *x)
{
    struct nodeagent *a = x->a;
    const char *kind = x->kind;
    x->t_accept = x->t_start = wlm_now_mono();
    wlm_strlcpy(x->status, "running", sizeof(x->status));
    x->next = a->actions;
    a->actions = x;
    prune_actions(a, x->t_accept);
    persist(x);
    wlm_info(NA_COMP, "action accepted", "id=%s kind=%s %s=%s", x->id, x->kind,
             na_kind_is_app(kind) ? "instance" : "job", x->job);
    if (!strcmp(kind, "start"))
        na_queue_step(x, na_start_run, na_start_after);
    else if (!strcmp(kind, "pause"))
        na_queue_step(x, na_pause_run, na_pause_after);
    else if (!strcmp(kind, "resume"))
        na_queue_step(x, na_resume_run, na_resume_after);
    else if (!strcmp(kind, "suspend"))
        na_queue_step(x, na_suspend_run, na_suspend_after);
    else if (!strcmp(kind, "restore"))
        na_queue_step(x, na_restore_run, na_restore_after);
    else if (!strcmp(kind, "migrate"))
        na_queue_step(x, na_migrate_run, na_migrate_after);
    else if (!strcmp(kind, "resize") || !strcmp(kind, "app_resize"))
        na_queue_step(x, na_resize_run, NULL);
    else if (!strcmp(kind, "stop") || !strcmp(kind, "app_stop"))
        na_queue_step(x, na_stop_run, na_stop_after);
    else if (!strcmp(kind, "destroy"))
        na_queue_step(x, na_destroy_run, na_destroy_after);
    else if (!strcmp(kind, "app_start"))
        na_queue_step(x, na_app_start_run, na_app_start_after);
    else if (!strcmp(kind, "pool_hint"))
        na_queue_step(x, na_pool_hint_run, NULL);
    else if (!strcmp(kind, "adopt"))
        na_queue_step(x, na_adopt_run, na_adopt_after);
    else
        na_queue_step(x, na_power_run, na_power_after);
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
        wlm_http_respond_json(
            req, !strcmp(old->status, "succeeded") || !strcmp(old->status, "failed") ? 200 : 202,
            action_json(old));
        json_decref(body);
        return;
    }
    int finished = 0;
    json_t *stored = stored_action(a, id, &finished);
    if (stored) {
        /* Accepted by an earlier run of the agent: its recorded outcome. */
        wlm_http_respond_json(req, finished ? 200 : 202, stored);
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
                       "power_on, pool_hint, adopt)",
                       kind);
        goto bad;
    }
    const char *target = na_kind_is_app(kind) ? inst : job;
    const char *fname = na_kind_is_app(kind) ? "instance" : "job";
    if (!kind_is_node(kind)) {
        if (!target) {
            wlm_error_setf(&err, WLM_EINVAL, fname, "action '%s' needs '%s'", kind, fname);
            goto bad;
        }
        if (!valid_id(target)) {
            wlm_error_setf(&err, WLM_EINVAL, fname, "'%s' must be 1-100 of [A-Za-z0-9._-]", fname);
            goto bad;
        }
        if (na_job_busy(a, target)) {
            wlm_error_set(&err, WLM_ECONFLICT, "another action on %s '%s' is still running", fname,
                          target);
            goto bad;
        }
    }
    struct na_action *x = na_action_new(a, id, kind, target, body);
    if (!x) {
        json_decref(body);
        wlm_http_respond_error(req, 500, "internal", "out of memory");
        return;
    }
    if (check_state(x, &err) < 0) {
        na_action_free(x);
        wlm_http_respond_werr(req, &err);
        return;
    }
    na_action_launch(x);
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
        int finished = 0;
        json_t *stored = req->nparams ? stored_action(a, req->params[0], &finished) : NULL;
        if (stored) {
            wlm_http_respond_json(req, 200, stored);
            return;
        }
        wlm_http_respond_error(req, 404, "not_found", "no action '%s' on node %s",
                               req->nparams ? req->params[0] : "", a->cfg.name);
        return;
    }
    wlm_http_respond_json(req, 200, action_json(x));
}

void na_actions_routes(struct nodeagent *a)
{
    wlm_http_server_route(a->http, "POST", "/v1/actions", 1, h_post_action, a);
    wlm_http_server_route(a->http, "GET", "/v1/actions/:id", 1, h_get_action, a);
    wlm_http_server_route(a->http, "GET", "/v1/jobs", 1, na_h_list_jobs, a);
    wlm_http_server_route(a->http, "GET", "/v1/jobs/:id", 1, na_h_get_job, a);
}
