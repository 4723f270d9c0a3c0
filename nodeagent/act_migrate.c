/* migrate: live through libvirt when `dest_uri` works, then the target
 * agent adopts the domain into its VM-ID repository; else (no `dest_uri`,
 * or the live migration failed while the domain is still here) suspend
 * here, restore on the target agent from shared storage and poll it,
 * bringing the job back here when the target cannot restore it. */
#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <string.h>
#include <unistd.h>

#include "actions_int.h"

/* ------------------------------------------------------------ migrate */

static void migrate_fail_back_run(struct na_action *x)
{
    /* The target could not restore: bring the job back here. */
    struct wlm_error e2 = {0};
    char console[1200];
    na_job_path(x->a, x->job, "console.log", console, sizeof(console));
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

void na_migrate_timer_closed(uv_handle_t *h)
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
    na_set_result(x, json_pack("{s:s,s:s,s:f}", "target", x->target, "mode", mode, "seconds",
                               wlm_now_mono() - x->t_start));
    if (x->recovered)
        json_object_set_new(x->result, "recovered", json_true());
    else if (x->stage == 1) {
        json_object_set_new(x->result, "downtime_ms", json_real(x->mstats.downtime_ms));
        json_object_set_new(x->result, "migration_ms", json_real(x->mstats.total_ms));
        json_object_set_new(x->result, "memory_bytes", json_integer(x->mstats.data_bytes));
    }
    if (x->live_error[0])
        json_object_set_new(x->result, "live_error", json_string(x->live_error));
    na_action_finish(x);
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
        migrate_done(x, x->stage == 1 ? "live" : "suspend-copy-restore");
    } else if ((st && !strcmp(st, "failed")) || (!(err && err->code) && resp->status >= 400) ||
               ++x->polls > 1200) {
        const char *detail = NULL;
        if (o)
            wlm_json_get_str(o, "detail", 0, &detail, NULL);
        wlm_error_set(&x->err, WLM_EIO, "%s on target %s failed: %s",
                      x->stage == 1 ? "adopting the live-migrated job" : "restore", x->target,
                      detail               ? detail
                      : (err && err->code) ? err->msg
                                           : (resp && resp->body ? resp->body : "timeout"));
        if (x->stage == 1)
            na_action_finish(x); /* the domain runs there; nothing to bring back */
        else
            na_queue_step(x, migrate_fail_back_run, migrate_fail_back_after);
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
    if (wlm_http_client_request(a->client, "GET", url, na_api_token(a), NULL, NULL, 0, 5000,
                                on_migrate_status, x) < 0)
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
            wlm_error_set(&x->err, WLM_EIO, "target %s refused the %s: %s", x->target,
                          x->stage == 1 ? "adoption" : "restore",
                          (err && err->code) ? err->msg : resp->body);
            if (x->stage == 1)
                na_action_finish(x);
            else
                na_queue_step(x, migrate_fail_back_run, migrate_fail_back_after);
        } else {
            migrate_poll(x);
        }
    }
    na_pending_dec(a);
}

void na_migrate_run(struct na_action *x)
{
    struct nodeagent *a = x->a;
    const char *uri = na_pstr(x, "dest_uri");
    x->stage = 0;
    if (uri && *uri) {
        struct wlm_error e2 = {0};
        if (a->vm->ops->migrate(a->vm, x->job, uri, &x->mstats, &e2) == 0) {
            x->stage = 1; /* live migration done */
            return;
        }
        /* Still here (libvirt aborts a failed migration and the source
         * keeps running): fall back to the save file, and say why. */
        struct nodeagent_wl_info wi = {0};
        int here =
            a->vm->ops->info(a->vm, x->job, &wi, NULL) == 0 && wi.state != NODEAGENT_WL_SHUTOFF;
        if (!here || !x->target[0]) {
            x->err = e2;
            return;
        }
        wlm_strlcpy(x->live_error, e2.msg, sizeof(x->live_error));
        wlm_warn(NA_COMP, "live migration failed; suspending to shared storage instead",
                 "job=%s error=\"%s\"", x->job, e2.msg);
    }
    a->vm->ops->suspend(a->vm, x->job, x->rec.save_path, &x->err);
}

/* POST an action to the target agent, then poll it (on_migrate_status). */
static void post_to_target(struct na_action *x, json_t *body)
{
    struct nodeagent *a = x->a;
    char *s = wlm_json_dumps(body);
    json_decref(body);
    char *url = wlm_asprintf("%s/v1/actions", x->target);
    na_pending_inc(a);
    if (wlm_http_client_request(a->client, "POST", url, na_api_token(a), "application/json", s,
                                strlen(s), 10000, on_migrate_posted, x) < 0) {
        na_pending_dec(a);
        wlm_error_set(&x->err, WLM_EIO, "cannot reach target %s", x->target);
        if (x->stage == 1)
            na_action_finish(x);
        else
            na_queue_step(x, migrate_fail_back_run, migrate_fail_back_after);
    }
    free(url);
    free(s);
}

void na_migrate_after(struct na_action *x)
{
    struct nodeagent *a = x->a;
    if (x->err.code)
        return;
    json_t *body;
    if (x->stage == 1) {
        /* The domain runs on the target hypervisor: gone from here. The
         * target agent takes it into its repository, so the job's record
         * follows it. */
        wlm_strlcpy(x->rec.state, "migrated", sizeof(x->rec.state));
        nodeagent_repo_put(a->repo, &x->rec, NULL);
        x->done = 0;
        if (!x->target[0]) {
            migrate_done(x, "live");
            return;
        }
        snprintf(x->remote_id, sizeof(x->remote_id), "%s.adopt", x->id);
        body = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "id", x->remote_id, "kind", "adopt",
                         "job", x->job, "command", x->rec.command, "hostname", x->rec.hostname,
                         "ip", x->rec.ip, "mac", x->rec.mac);
        if (x->rec.image[0])
            json_object_set_new(body, "image", json_string(x->rec.image));
        post_to_target(x, body);
        return;
    }
    wlm_strlcpy(x->rec.state, "suspended", sizeof(x->rec.state));
    nodeagent_repo_put(a->repo, &x->rec, NULL);
    /* Ask the target agent to restore from shared storage, then poll it. */
    x->done = 0;
    snprintf(x->remote_id, sizeof(x->remote_id), "%s.restore", x->id);
    body = json_pack("{s:s,s:s,s:s,s:s}", "id", x->remote_id, "kind", "restore", "job", x->job,
                     "path", x->rec.save_path);
    if (x->rec.command[0])
        json_object_set_new(body, "command", json_string(x->rec.command));
    if (x->rec.sim_remaining >= 0) {
        json_object_set_new(body, "sim_seconds", json_real(x->rec.sim_remaining));
        json_object_set_new(body, "sim_total", json_real(x->rec.sim_total));
    }
    post_to_target(x, body);
}

/* adopt (on the target of a live migration): the domain already runs on
 * this node's hypervisor; record it, and point the job's console log here
 * at the file the migrated domain writes. */
void na_adopt_run(struct na_action *x)
{
    struct nodeagent *a = x->a;
    struct nodeagent_wl_info wi = {0};
    if (a->vm->ops->info(a->vm, x->job, &wi, &x->err) < 0)
        return;
    if (wi.state == NODEAGENT_WL_SHUTOFF) {
        wlm_error_set(&x->err, WLM_ECONFLICT, "adopt %s: its domain is shut off", x->job);
        return;
    }
    wlm_strlcpy(x->rec.uuid, wi.uuid, sizeof(x->rec.uuid));
    wlm_strlcpy(x->rec.state, wi.state == NODEAGENT_WL_PAUSED ? "paused" : "running",
                sizeof(x->rec.state));
    char dir[1200], console[1200], src[1200];
    na_job_path(a, x->job, NULL, dir, sizeof(dir));
    mkdir(dir, 0755);
    na_job_path(a, x->job, "console.log", console, sizeof(console));
    if (nodeagent_libvirt_console_path(a->vm, x->job, src, sizeof(src)) == 0 &&
        strcmp(src, console)) {
        unlink(console);
        if (symlink(src, console) != 0)
            wlm_warn(NA_COMP, "adopt: no console link", "job=%s error=\"%s\"", x->job,
                     strerror(errno));
    }
    na_set_result(
        x, json_pack("{s:s,s:s,s:s}", "state", x->rec.state, "uuid", x->rec.uuid, "console", src));
}

void na_adopt_after(struct na_action *x)
{
    if (x->err.code) {
        nodeagent_repo_delete(x->a->repo, x->job, NULL);
        return;
    }
    nodeagent_repo_put(x->a->repo, &x->rec, &x->err);
}
