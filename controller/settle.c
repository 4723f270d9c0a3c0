/*
 * settle.c - actions in flight across a controller restart.
 *
 * Every action on a job or an instance's allocation (a job's start too) is
 * written to `inflight_actions` (through the
 * controller's store, so on etcd a standby that takes over sees them) when it is
 * sent and deleted when its outcome is known. A controller that starts with
 * rows there was stopped (or killed) while those actions were out: it loads
 * them into c->settle and, on the first heartbeat of each action's node,
 * asks that agent for the action's outcome (GET /v1/actions/:id; agent
 * actions are idempotent and their outcomes kept). The outcome is applied
 * exactly as a completion notification would have been: a suspend that
 * succeeded makes the job SUSPENDED with its save file, a migration that
 * succeeded moves it, one that failed leaves it RUNNING on its source, a
 * stop removes the instance... An agent that has no record of the action
 * never received it: it failed. A completion notification that arrives
 * first (the agent retrying) settles it the same way.
 *
 * So everything in flight is settled within one heartbeat of the restart,
 * not at the next placement; and no placement is decided while something is
 * still unsettled (it would decide on a state that is about to change),
 * unless the node stays silent past the action timeout.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cycle.h"
#include "settle.h"

#define INFLIGHT "inflight_actions"

static const char settle_schema[] =
    "CREATE TABLE IF NOT EXISTS inflight_actions ("
    " id TEXT PRIMARY KEY, kind TEXT NOT NULL, node TEXT NOT NULL, from_node TEXT NOT NULL,"
    " dest_node TEXT NOT NULL, is_job INTEGER NOT NULL, job INTEGER NOT NULL, app TEXT NOT NULL,"
    " instance TEXT NOT NULL, cpu_mhz REAL NOT NULL, memory_mb REAL NOT NULL,"
    " sent_at REAL NOT NULL)";

int ctl_settle_tracked(const struct ctl_action *a)
{
    switch (a->kind) {
    case PLACEMENT_ACT_START_JOB: /* its agent may still be starting it */
    case PLACEMENT_ACT_PAUSE_JOB:
    case PLACEMENT_ACT_RESUME_JOB:
    case PLACEMENT_ACT_SUSPEND_JOB:
    case PLACEMENT_ACT_RESTORE_JOB:
    case PLACEMENT_ACT_MIGRATE_JOB:
    case PLACEMENT_ACT_RESIZE:
    case PLACEMENT_ACT_STOP_INSTANCE: return 1;
    default: return 0;
    }
}

void ctl_settle_record(struct controller *c, const struct ctl_action *a)
{
    if (!ctl_settle_tracked(a))
        return;
    json_t *doc = json_pack("{s:s,s:s,s:s,s:s,s:s,s:i,s:I,s:s,s:s,s:f,s:f,s:f}", "id", a->id,
                            "kind", ctl_agent_kind(a), "node", a->node, "from_node", a->from_node,
                            "dest_node", a->dest_node, "is_job", a->is_job, "job",
                            (json_int_t)a->job, "app", a->app, "instance", a->instance, "cpu_mhz",
                            a->cpu_mhz, "memory_mb", a->memory_mb, "sent_at", wlm_now_wall());
    struct wlm_error err = {0};
    if (!doc || wlm_store_put(c->store, INFLIGHT, "id", doc, &err))
        wlm_warn(CTL_COMP, "cannot record an action in flight", "id=%s error=\"%s\"", a->id,
                 err.msg);
    json_decref(doc);
}

void ctl_settle_forget(struct controller *c, const char *id)
{
    struct wlm_error err = {0};
    if (wlm_store_del(c->store, INFLIGHT, "id", id, &err))
        wlm_debug(CTL_COMP, "cannot forget an action in flight", "id=%s error=\"%s\"", id, err.msg);
}

static int load_row(const json_t *d, void *ud)
{
    struct controller *c = ud;
    struct ctl_action *n = realloc(c->settle, (c->nsettle + 1) * sizeof(*n));
    if (!n)
        return -ENOMEM;
    c->settle = n;
    struct ctl_action *a = &c->settle[c->nsettle++];
    memset(a, 0, sizeof(*a));
#define S(f)                                                                                       \
    wlm_strlcpy(a->f,                                                                              \
                json_string_value(json_object_get(d, #f))                                          \
                    ? json_string_value(json_object_get(d, #f))                                    \
                    : "",                                                                          \
                sizeof(a->f))
    S(id);
    S(node);
    S(from_node);
    S(dest_node);
    S(app);
    S(instance);
#undef S
    a->is_job = (int)json_integer_value(json_object_get(d, "is_job"));
    /* The kind is stored by its agent name ("suspend"), which outlives any
     * renumbering of the enum. */
    const char *kind = json_string_value(json_object_get(d, "kind"));
    int found = 0;
    for (int k = 0; kind && k < PLACEMENT_ACT__COUNT && !found; k++) {
        a->kind = (enum placement_action_kind)k;
        found = !strcmp(ctl_agent_kind(a), kind);
    }
    if (!found) {
        wlm_warn(CTL_COMP, "dropping an action in flight of an unknown kind", "id=%s kind=%s",
                 a->id, kind ? kind : "?");
        ctl_settle_forget(c, a->id);
        c->nsettle--;
        return 0;
    }
    a->job = json_integer_value(json_object_get(d, "job"));
    a->cpu_mhz = json_number_value(json_object_get(d, "cpu_mhz"));
    a->memory_mb = json_number_value(json_object_get(d, "memory_mb"));
    a->st = CTL_ACT_SENT;
    a->sent_at = wlm_now_mono(); /* the timeout counts from this start */
    wlm_info(CTL_COMP, "action in flight before the restart, to settle", "id=%s kind=%s node=%s",
             a->id, ctl_agent_kind(a), a->node);
    return 0;
}

int ctl_settle_load(struct controller *c, struct wlm_error *err)
{
    int rc = wlm_store_is_etcd(c->store)
                 ? 0
                 : wlm_db_exec(wlm_store_sqlite(c->store), settle_schema, err);
    if (rc)
        return rc;
    return wlm_store_scan(c->store, INFLIGHT, wlm_store_is_etcd(c->store) ? NULL : "sent_at",
                          load_row, c, err);
}

int ctl_settle_job_pending(const struct controller *c, int64_t job)
{
    for (size_t i = 0; i < c->nsettle; i++)
        if (c->settle[i].is_job && c->settle[i].job == job)
            return 1;
    return 0;
}

struct ctl_action *ctl_settle_find(struct controller *c, const char *id)
{
    for (size_t i = 0; i < c->nsettle; i++)
        if (!strcmp(c->settle[i].id, id))
            return &c->settle[i];
    return NULL;
}

static void settle_remove(struct controller *c, struct ctl_action *a)
{
    size_t i = (size_t)(a - c->settle);
    ctl_settle_forget(c, a->id);
    memmove(&c->settle[i], &c->settle[i + 1], (c->nsettle - i - 1) * sizeof(*a));
    if (--c->nsettle == 0) {
        free(c->settle);
        c->settle = NULL;
        wlm_info(CTL_COMP, "every action in flight before the restart is settled", "%s", "");
    }
}

void ctl_settle_outcome(struct controller *c, struct ctl_action *a, int ok, const char *detail,
                        const json_t *result)
{
    wlm_info(CTL_COMP, "settled an action from before the restart",
             "id=%s kind=%s node=%s outcome=%s detail=\"%s\"", a->id, ctl_agent_kind(a), a->node,
             ok ? "succeeded" : "failed", detail ? detail : "");
    if (ok) {
        a->st = CTL_ACT_DONE;
        ctl_action_apply(c, a, result);
    } else {
        ctl_action_failed(c, a, detail && *detail ? detail : "the node agent reported failure");
    }
    if (a->kind == PLACEMENT_ACT_STOP_INSTANCE || (a->kind == PLACEMENT_ACT_RESIZE && !a->is_job))
        ctl_router_push(c, 0);
    settle_remove(c, a);
}

struct settle_q {
    struct controller *c;
    char id[64];
};

static void on_status(const struct wlm_http_response *resp, const struct wlm_error *err, void *ud)
{
    struct settle_q *q = ud;
    struct controller *c = q->c;
    struct ctl_action *a = ctl_settle_find(c, q->id);
    free(q);
    if (!a)
        return;     /* settled meanwhile (a completion notification) */
    a->done_at = 0; /* ask again on the next heartbeat unless settled below */
    if (err && err->code) {
        wlm_debug(CTL_COMP, "cannot ask an agent about an action yet", "id=%s error=\"%s\"", a->id,
                  err->msg);
        return;
    }
    if (resp->status == 404) {
        ctl_settle_outcome(c, a, 0, "the node agent has no record of it: it never arrived", NULL);
        return;
    }
    json_t *v = resp->status == 200 ? json_loadb(resp->body, resp->body_len, 0, NULL) : NULL;
    const char *st = json_string_value(json_object_get(v, "status"));
    if (st && !strcmp(st, "succeeded")) {
        ctl_settle_outcome(c, a, 1, NULL, json_object_get(v, "result"));
    } else if (st && !strcmp(st, "failed")) {
        const char *ename = json_string_value(json_object_get(v, "error"));
        /* As for a live completion: a resize the driver cannot enforce is
         * still the allocation decided. */
        int ok = a->kind == PLACEMENT_ACT_RESIZE && ename && !strcmp(ename, "unsupported");
        ctl_settle_outcome(c, a, ok, json_string_value(json_object_get(v, "detail")), NULL);
    } else {
        wlm_debug(CTL_COMP, "action from before the restart still running", "id=%s status=%s",
                  a->id, st ? st : "?");
    }
    json_decref(v);
}

void ctl_settle_heartbeat(struct controller *c, const struct ctl_node *n)
{
    double now = wlm_now_mono();
    for (size_t i = 0; i < c->nsettle; i++) {
        struct ctl_action *a = &c->settle[i];
        if (strcmp(a->node, n->name) || !n->agent_url[0])
            continue;
        if (a->done_at > 0 && now - a->done_at < 1.0)
            continue; /* a question is out */
        a->done_at = now;
        struct settle_q *q = calloc(1, sizeof(*q));
        if (!q)
            return;
        q->c = c;
        wlm_strlcpy(q->id, a->id, sizeof(q->id));
        char *url = wlm_asprintf("%s/v1/actions/%s", n->agent_url, a->id);
        if (!url || wlm_http_client_request(c->client, "GET", url, ctl_agent_token(c), NULL, NULL,
                                            0, 5000, on_status, q) < 0)
            free(q);
        free(url);
    }
}

void ctl_settle_timeouts(struct controller *c)
{
    double now = wlm_now_mono();
    for (size_t i = 0; i < c->nsettle;) {
        struct ctl_action *a = &c->settle[i];
        if (now - a->sent_at > c->cfg.action_timeout_ms / 1000.0) {
            ctl_settle_outcome(c, a, 0, "its node did not report it in time after the restart",
                               NULL);
            continue;
        }
        i++;
    }
}

void ctl_settle_free(struct controller *c)
{
    free(c->settle);
    c->settle = NULL;
    c->nsettle = 0;
}
