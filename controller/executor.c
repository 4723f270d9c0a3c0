/* executor.c - carrying out a decision: the ordered actions are sent to
 * the node agents when their dependencies are done, and complete when the
 * agent posts /v1/actions/ID/complete. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cycle.h"
#include "ha.h"
#include "settle.h"

/* ------------------------------------------------------------ executors */

int ctl_job_has_save(const struct controller *c, int64_t id)
{
    char key[32];
    snprintf(key, sizeof(key), "%lld", (long long)id);
    return json_object_get(c->saved_jobs, key) != NULL;
}

const char *ctl_agent_kind(const struct ctl_action *a)
{
    switch (a->kind) {
    case PLACEMENT_ACT_POWER_ON: return "power_on";
    case PLACEMENT_ACT_POWER_OFF: return "power_off";
    case PLACEMENT_ACT_START_INSTANCE: return "app_start";
    case PLACEMENT_ACT_STOP_INSTANCE: return "app_stop";
    case PLACEMENT_ACT_START_JOB: return "start";
    case PLACEMENT_ACT_PAUSE_JOB: return "pause";
    case PLACEMENT_ACT_RESUME_JOB: return "resume";
    case PLACEMENT_ACT_SUSPEND_JOB: return "suspend";
    case PLACEMENT_ACT_RESTORE_JOB: return "restore";
    case PLACEMENT_ACT_MIGRATE_JOB: return "migrate";
    case PLACEMENT_ACT_RESIZE: return a->is_job ? "resize" : "app_resize";
    default: return "unknown";
    }
}

void ctl_job_transition(struct controller *c, int64_t id, enum jobsched_state to,
                        const char *reason)
{
    const struct jobsched_job *j = jobsched_get(c->js, id);
    if (!j || j->state == to || !jobsched_transition_allowed(j->state, to))
        return;
    struct wlm_error err = {0};
    if (jobsched_transition(c->js, id, to, wlm_now_wall(), reason, &err))
        wlm_warn(CTL_COMP, "job transition refused", "job=%lld to=%s detail=\"%s\"", (long long)id,
                 jobsched_state_name(to), err.msg);
}

void ctl_job_place(struct controller *c, int64_t id, const char *node, double mhz)
{
    struct wlm_error err = {0};
    if (jobsched_set_placement(c->js, id, node, mhz, wlm_now_wall(), &err))
        wlm_warn(CTL_COMP, "recording job placement failed", "job=%lld detail=\"%s\"",
                 (long long)id, err.msg);
}

/* The state changes an action makes once the agent confirms it. */
static void action_apply(struct controller *c, struct ctl_action *a, const json_t *result)
{
    struct ctl_instance *in = a->instance[0] ? ctl_inst_by_id(c, a->instance) : NULL;
    char reason[160];
    snprintf(reason, sizeof(reason), "placement: %s on %s", ctl_agent_kind(a), a->node);
    switch (a->kind) {
    case PLACEMENT_ACT_START_INSTANCE:
        if (in) {
            in->state = CTL_INST_RUNNING;
            in->started_at = wlm_now_wall();
        }
        break;
    case PLACEMENT_ACT_STOP_INSTANCE:
        if (in)
            ctl_inst_remove(c, in);
        break;
    case PLACEMENT_ACT_RESIZE:
        if (in)
            in->cpu_mhz = a->cpu_mhz;
        else if (a->is_job)
            ctl_job_place(c, a->job, a->node, a->cpu_mhz);
        break;
    case PLACEMENT_ACT_START_JOB:
    case PLACEMENT_ACT_RESTORE_JOB:
    case PLACEMENT_ACT_RESUME_JOB: {
        char key[32];
        snprintf(key, sizeof(key), "%lld", (long long)a->job);
        json_object_del(c->job_backoff, key);
    }
        ctl_job_transition(c, a->job, JOBSCHED_RUNNING, reason);
        ctl_job_place(c, a->job, a->node, a->cpu_mhz);
        break;
    case PLACEMENT_ACT_MIGRATE_JOB:
        ctl_job_transition(c, a->job, JOBSCHED_RUNNING, reason);
        ctl_job_place(c, a->job, a->dest_node, a->cpu_mhz);
        break;
    case PLACEMENT_ACT_PAUSE_JOB:
        ctl_job_transition(c, a->job, JOBSCHED_PAUSED, reason);
        ctl_job_place(c, a->job, a->node, 0);
        break;
    case PLACEMENT_ACT_SUSPEND_JOB: {
        ctl_job_transition(c, a->job, JOBSCHED_SUSPENDED, reason);
        ctl_job_place(c, a->job, NULL, 0);
        char key[32];
        snprintf(key, sizeof(key), "%lld", (long long)a->job);
        json_object_set_new(c->saved_jobs, key, json_true());
        break;
    }
    case PLACEMENT_ACT_POWER_ON:
    case PLACEMENT_ACT_POWER_OFF: {
        struct ctl_node *n = ctl_node_find(c, a->node);
        if (n) {
            if (!n->report)
                n->report = json_object();
            json_t *p = json_object_get(n->report, "power");
            if (!p) {
                p = json_object();
                json_object_set_new(n->report, "power", p);
            }
            json_object_set_new(p, "state",
                                json_string(a->kind == PLACEMENT_ACT_POWER_ON ? "on" : "off"));
        }
        wlm_info(CTL_COMP,
                 a->kind == PLACEMENT_ACT_POWER_ON ? "node powered on" : "node powered off",
                 "node=%s", a->node);
        break;
    }
    default: break;
    }
    (void)result;
    ctl_count_instances(c);
}

void ctl_action_apply(struct controller *c, struct ctl_action *a, const json_t *result)
{
    action_apply(c, a, result);
}

/* ------------------------------------------------------------ honesty */

int ctl_node_is_test(const struct ctl_node *n)
{
    const char *d = n && n->report ? json_string_value(json_object_get(n->report, "driver")) : NULL;
    return d && !strcmp(d, "test");
}

int ctl_node_unsupported(const struct controller *c, const char *node, const char *kind)
{
    json_t *n = json_object_get(c->unsupported, node);
    return n && json_object_get(n, kind);
}

/* The agent said it cannot do this kind of action at all: not asked again,
 * said once (log, `wlm nodes`). */
static void note_unsupported(struct controller *c, const struct ctl_action *a, const char *detail)
{
    if (!c->unsupported)
        c->unsupported = json_object();
    const char *kind = ctl_agent_kind(a);
    json_t *n = json_object_get(c->unsupported, a->node);
    if (!n) {
        n = json_object();
        json_object_set_new(c->unsupported, a->node, n);
    }
    if (json_object_get(n, kind))
        return;
    json_object_set_new(n, kind, json_string(detail && *detail ? detail : "unsupported"));
    wlm_warn(CTL_COMP, "node cannot carry out an action kind; not asked again",
             "node=%s kind=%s detail=\"%s\"", a->node, kind, detail ? detail : "");
}

static int capacity_error(const struct ctl_action *a, const char *why)
{
    return !strcmp(a->error_name, "limit_exceeded") ||
           (why && (strstr(why, "at its maximum") || strstr(why, "limit_exceeded")));
}

int ctl_job_backing_off(struct controller *c, int64_t id, double now)
{
    char key[32];
    snprintf(key, sizeof(key), "%lld", (long long)id);
    json_t *b = json_object_get(c->job_backoff, key);
    return b && json_number_value(json_object_get(b, "until")) > now;
}

static void job_backoff(struct controller *c, const struct ctl_action *a, const char *why)
{
    if (!c->job_backoff)
        c->job_backoff = json_object();
    char key[32];
    snprintf(key, sizeof(key), "%lld", (long long)a->job);
    json_t *b = json_object_get(c->job_backoff, key);
    long long n = b ? json_integer_value(json_object_get(b, "n")) + 1 : 1;
    double period = (double)c->cfg.placement_period_ms / 1000.0;
    double delay = period * (double)(1LL << (n < 6 ? n : 6));
    if (delay > 600)
        delay = 600;
    double until = wlm_now_wall() + delay;
    json_object_set_new(c->job_backoff, key,
                        json_pack("{s:s, s:f, s:I, s:s}", "node", a->node, "until", until, "n",
                                  (json_int_t)n, "why", why));
    char reason[256];
    snprintf(reason, sizeof(reason), "%s on %s failed for lack of capacity (%s); not placed again "
             "for %.0f s (failure %lld in a row)", ctl_agent_kind(a), a->node, why, delay, n);
    ctl_job_transition(c, a->job, JOBSCHED_ELIGIBLE, reason);
    wlm_warn(CTL_COMP, "job backs off after a capacity failure", "job=%lld node=%s seconds=%.0f",
             (long long)a->job, a->node, delay);
}

/* An action that could not be carried out: undo what sending it started. */
void ctl_action_failed(struct controller *c, struct ctl_action *a, const char *why)
{
    ctl_settle_forget(c, a->id);
    a->st = CTL_ACT_FAILED;
    a->done_at = wlm_now_mono();
    wlm_strlcpy(a->error, why, sizeof(a->error));
    wlm_warn(CTL_COMP, "action failed", "id=%s kind=%s node=%s error=\"%s\"", a->id,
             ctl_agent_kind(a), a->node, why);
    struct ctl_instance *in = a->instance[0] ? ctl_inst_by_id(c, a->instance) : NULL;
    if (a->kind == PLACEMENT_ACT_START_INSTANCE && in)
        ctl_inst_remove(c, in);
    else if (a->kind == PLACEMENT_ACT_STOP_INSTANCE && in)
        in->state = CTL_INST_RUNNING;
    else if ((a->kind == PLACEMENT_ACT_START_JOB || a->kind == PLACEMENT_ACT_RESTORE_JOB) &&
             capacity_error(a, why))
        job_backoff(c, a, why);
    else if (a->kind == PLACEMENT_ACT_START_JOB)
        ctl_job_transition(c, a->job, JOBSCHED_ELIGIBLE, "start failed; will be placed again");
    else if (a->kind == PLACEMENT_ACT_MIGRATE_JOB)
        ctl_job_transition(c, a->job, JOBSCHED_RUNNING, "migration failed; still on its node");
    wlm_counter_add(wlm_metrics_counter(c->metrics, "wlm_actions_failed_total",
                                        "Placement actions that failed.", NULL),
                    1);
    ctl_count_instances(c);
}

struct send_ctx {
    struct controller *c;
    char id[64];
};

static struct ctl_action *plan_find(struct controller *c, const char *id)
{
    for (size_t i = 0; i < c->nplan; i++)
        if (!strcmp(c->plan[i].id, id))
            return &c->plan[i];
    return NULL;
}

static void action_completed(struct controller *c, struct ctl_action *a, int ok, const char *detail,
                             const json_t *result)
{
    if (a->st == CTL_ACT_DONE || a->st == CTL_ACT_FAILED)
        return;
    if (ctl_settle_tracked(a))
        ctl_settle_forget(c, a->id);
    if (ok) {
        a->st = CTL_ACT_DONE;
        a->done_at = wlm_now_mono();
        wlm_info(CTL_COMP, "action done", "id=%s kind=%s node=%s seconds=%.2f", a->id,
                 ctl_agent_kind(a), a->node, a->done_at - a->sent_at);
        action_apply(c, a, result);
    } else {
        ctl_action_failed(c, a, detail && *detail ? detail : "the node agent reported failure");
    }
    if (a->kind == PLACEMENT_ACT_START_INSTANCE || a->kind == PLACEMENT_ACT_STOP_INSTANCE ||
        (a->kind == PLACEMENT_ACT_RESIZE && !a->is_job))
        ctl_router_push(c, 0);
    ctl_dispatch(c);
}

static void on_sent(const struct wlm_http_response *resp, const struct wlm_error *err, void *ud)
{
    struct send_ctx *sc = ud;
    struct controller *c = sc->c;
    struct ctl_action *a = plan_find(c, sc->id);
    free(sc);
    if (!a || a->st != CTL_ACT_SENT)
        return;
    if (err && err->code) {
        ctl_action_failed(c, a, err->msg);
        ctl_dispatch(c);
        return;
    }
    if (resp->status == 202 || resp->status == 200) {
        /* 200 = the agent already finished this id (a retry): take its result. */
        if (resp->status == 200) {
            json_t *v = json_loadb(resp->body, resp->body_len, 0, NULL);
            const char *st = v ? json_string_value(json_object_get(v, "status")) : NULL;
            if (st && !strcmp(st, "succeeded"))
                action_completed(c, a, 1, NULL, json_object_get(v, "result"));
            else if (st && !strcmp(st, "failed"))
                action_completed(c, a, 0, json_string_value(json_object_get(v, "detail")), NULL);
            json_decref(v);
        }
        return;
    }
    json_t *v = json_loadb(resp->body, resp->body_len, 0, NULL);
    const char *detail = v ? json_string_value(json_object_get(v, "detail")) : NULL;
    const char *ename = v ? json_string_value(json_object_get(v, "error")) : NULL;
    char msg[256];
    snprintf(msg, sizeof(msg), "agent answered %d: %s", resp->status, detail ? detail : "");
    wlm_strlcpy(a->error_name, ename ? ename : "", sizeof(a->error_name));
    json_decref(v);
    /* A resize the driver cannot do is not a failure of the plan: the
     * allocation is still what the placement decided, only not enforced;
     * the node is not asked again. */
    if (a->kind == PLACEMENT_ACT_RESIZE && resp->status == 501) {
        note_unsupported(c, a, msg);
        action_completed(c, a, 1, NULL, NULL);
        return;
    }
    ctl_action_failed(c, a, msg);
    ctl_dispatch(c);
}

/* The CPU cap given to a web instance: its allocation, but never less than
 * one core, so a burst is not starved before the next decision (the cap
 * protects jobs from a runaway instance; it is not the scheduler). */
static double app_cap(struct controller *c, const struct ctl_action *a)
{
    const struct ctl_node *n = ctl_node_find(c, a->node);
    double core = n ? n->mhz : 1000;
    return a->cpu_mhz > core ? a->cpu_mhz : core;
}

static json_t *action_body(struct controller *c, const struct ctl_action *a)
{
    json_t *b = json_pack("{s:s, s:s}", "id", a->id, "kind", ctl_agent_kind(a));
    char jid[32];
    snprintf(jid, sizeof(jid), "j%lld", (long long)a->job);
    if (a->is_job)
        json_object_set_new(b, "job", json_string(jid));
    if (a->instance[0])
        json_object_set_new(b, "instance", json_string(a->instance));
    const struct jobsched_job *j = a->is_job ? jobsched_get(c->js, a->job) : NULL;
    switch (a->kind) {
    case PLACEMENT_ACT_START_INSTANCE: {
        const struct ctl_app *app = ctl_app_find(c, a->app);
        const struct ctl_instance *in = ctl_inst_by_id(c, a->instance);
        json_object_set_new(
            b, "command",
            json_string(app ? json_string_value(json_object_get(app->spec, "command")) : ""));
        json_object_set_new(b, "port", json_integer(in ? in->port : 0));
        const char *user = app ? json_string_value(json_object_get(app->spec, "user")) : NULL;
        if (user)
            json_object_set_new(b, "user", json_string(user));
        json_object_set_new(b, "cpu_cap_mhz", json_real(app_cap(c, a)));
        break;
    }
    case PLACEMENT_ACT_RESIZE:
        if (a->is_job) {
            /* A quota per vCPU period that gives the allocation. */
            const struct ctl_node *n = ctl_node_find(c, a->node);
            double per_core = n && n->mhz > 0 ? n->mhz : 1000;
            long long quota = (long long)(100000.0 * a->cpu_mhz / per_core /
                                          (j && j->threads > 0 ? j->threads : 1));
            if (quota < 1000)
                quota = 1000;
            json_object_set_new(b, "vcpu_quota", json_integer(quota));
            json_object_set_new(b, "vcpu_period", json_integer(100000));
        } else {
            json_object_set_new(b, "cpu_cap_mhz", json_real(app_cap(c, a)));
        }
        break;
    case PLACEMENT_ACT_START_JOB:
    case PLACEMENT_ACT_RESTORE_JOB:
        if (j && !c->cfg.simulate_jobs && ctl_node_is_test(ctl_node_find(c, a->node))) {
            /* Nothing runs inside a test-driver VM: the agent simulates the
             * job for the time its remaining work takes at its allocation. */
            double speed = a->cpu_mhz > 0 ? a->cpu_mhz : jobsched_job_max_mhz(j);
            double cap = jobsched_job_max_mhz(j);
            if (cap > 0 && speed > cap)
                speed = cap;
            double left = j->work_mcycles - j->done_mcycles;
            double total = speed > 0 ? j->work_mcycles / speed : 1;
            json_object_set_new(b, "sim_seconds",
                                json_real(speed > 0 && left > 0 ? left / speed + 0.001 : 0.001));
            if (a->kind == PLACEMENT_ACT_RESTORE_JOB)
                json_object_set_new(b, "sim_total", json_real(total > 0.001 ? total : 0.001));
        }
        if (j) {
            json_object_set_new(b, "command", json_string(j->command ? j->command : "true"));
            if (a->kind == PLACEMENT_ACT_START_JOB) {
                json_object_set_new(b, "vcpus", json_integer(j->threads > 0 ? j->threads : 1));
                json_object_set_new(b, "memory_mb",
                                    json_integer(j->memory_mb < 32 ? 32 : j->memory_mb));
            }
        }
        break;
    case PLACEMENT_ACT_MIGRATE_JOB: {
        const struct ctl_node *d = ctl_node_find(c, a->dest_node);
        json_object_set_new(b, "target", json_string(d ? d->agent_url : ""));
        break;
    }
    default: break;
    }
    return b;
}

static void action_send(struct controller *c, struct ctl_action *a)
{
    const struct ctl_node *n = ctl_node_find(c, a->node);
    a->st = CTL_ACT_SENT;
    a->sent_at = wlm_now_mono();
    if (!n || !n->agent_url[0]) {
        ctl_action_failed(c, a, "the node has no agent URL");
        return;
    }
    if (a->kind == PLACEMENT_ACT_START_JOB)
        ctl_job_transition(c, a->job, JOBSCHED_STARTING, "placement: starting");
    else if (a->kind == PLACEMENT_ACT_MIGRATE_JOB)
        ctl_job_transition(c, a->job, JOBSCHED_MIGRATING, "placement: migrating");
    else if (a->kind == PLACEMENT_ACT_STOP_INSTANCE) {
        struct ctl_instance *in = ctl_inst_by_id(c, a->instance);
        if (in) {
            /* Out of the router first, so no request is sent to it as it stops. */
            in->state = CTL_INST_STOPPING;
            ctl_router_push(c, 0);
        }
    }
    json_t *body = action_body(c, a);
    if (a->kind == PLACEMENT_ACT_RESTORE_JOB && !ctl_job_has_save(c, a->job)) {
        /* Its node was lost before it was ever saved: start it again, from
         * the beginning, where the placement put it. */
        const struct jobsched_job *j = jobsched_get(c->js, a->job);
        json_object_set_new(body, "kind", json_string("start"));
        if (j) {
            json_object_set_new(body, "vcpus", json_integer(j->threads > 0 ? j->threads : 1));
            json_object_set_new(body, "memory_mb",
                                json_integer(j->memory_mb < 32 ? 32 : j->memory_mb));
        }
        wlm_info(CTL_COMP, "restarting a job without a save file", "job=%lld node=%s",
                 (long long)a->job, a->node);
    }
    char *text = wlm_json_dumps(body);
    json_decref(body);
    char *url = wlm_asprintf("%s/v1/actions", n->agent_url);
    struct send_ctx *sc = calloc(1, sizeof(*sc));
    sc->c = c;
    wlm_strlcpy(sc->id, a->id, sizeof(sc->id));
    wlm_info(CTL_COMP, "action sent", "id=%s kind=%s node=%s", a->id, ctl_agent_kind(a), a->node);
    if (wlm_http_client_request(c->client, "POST", url, ctl_agent_token(c), "application/json",
                                text, strlen(text), 10000, on_sent, sc) < 0) {
        free(sc);
        ctl_action_failed(c, a, "could not send the request to the agent");
    } else {
        ctl_settle_record(c, a); /* settled from the agent's report after a restart */
    }
    free(url);
    free(text);
}

/* Send every waiting action whose dependencies are done; fail those whose
 * dependencies failed. Ends the plan when nothing is left. */
void ctl_dispatch(struct controller *c)
{
    if (!ctl_ha_may_act())
        return; /* a deposed leader sends nothing (HA: it is being replaced) */
    int progress = 1;
    while (progress) {
        progress = 0;
        for (size_t i = 0; i < c->nplan; i++) {
            struct ctl_action *a = &c->plan[i];
            if (a->st != CTL_ACT_WAITING)
                continue;
            int ready = 1, broken = 0;
            for (size_t d = 0; d < a->ndeps; d++) {
                enum ctl_act_state ds = c->plan[a->deps[d]].st;
                broken |= ds == CTL_ACT_FAILED;
                ready &= ds == CTL_ACT_DONE;
            }
            if (broken) {
                ctl_action_failed(c, a, "an action it depends on failed");
                progress = 1;
            } else if (ready) {
                action_send(c, a);
                progress = 1;
            }
        }
    }
    size_t open = 0, failed = 0;
    for (size_t i = 0; i < c->nplan; i++) {
        open += c->plan[i].st == CTL_ACT_WAITING || c->plan[i].st == CTL_ACT_SENT;
        failed += c->plan[i].st == CTL_ACT_FAILED;
    }
    if (c->nplan && !open) {
        wlm_info(CTL_COMP, "plan finished", "actions=%zu failed=%zu", c->nplan, failed);
        ctl_plan_free(c);
        ctl_events_broadcast(
            c, "plan",
            json_pack("{s:I,s:I}", "actions", (json_int_t)0, "failed", (json_int_t)failed));
        ctl_apps_reap(c);
    }
}

void ctl_plan_free(struct controller *c)
{
    for (size_t i = 0; i < c->nplan; i++)
        free(c->plan[i].deps);
    free(c->plan);
    c->plan = NULL;
    c->nplan = 0;
}

/* POST /v1/actions/:id/complete from a node agent. */
void ctl_handle_complete(struct wlm_http_req *req, void *ud)
{
    struct controller *c = ud;
    struct ctl_action *a = plan_find(c, req->params[0]);
    struct ctl_action *old = a ? NULL : ctl_settle_find(c, req->params[0]);
    if (old) {
        /* Sent before this controller's restart: settle it now. */
        struct wlm_error e2 = {0};
        json_t *b = wlm_json_parse_object(req->body, req->body_len, &e2);
        const char *st2 = NULL;
        if (!b || wlm_json_get_str(b, "status", 1, &st2, &e2)) {
            json_decref(b);
            wlm_http_respond_werr(req, &e2);
            return;
        }
        const char *en = json_string_value(json_object_get(b, "error"));
        int ok2 = !strcmp(st2, "succeeded") ||
                  (old->kind == PLACEMENT_ACT_RESIZE && en && !strcmp(en, "unsupported"));
        ctl_settle_outcome(c, old, ok2, json_string_value(json_object_get(b, "detail")),
                           json_object_get(b, "result"));
        json_decref(b);
        wlm_http_respond_json(req, 200, json_pack("{s:s}", "status", "recorded"));
        return;
    }
    if (!a) {
        /* A late or repeated notification: nothing waits for it. */
        wlm_http_respond_json(req, 200, json_pack("{s:s}", "status", "ignored"));
        return;
    }
    struct wlm_error err = {0};
    json_t *body = wlm_json_parse_object(req->body, req->body_len, &err);
    const char *st = NULL;
    if (!body || wlm_json_get_str(body, "status", 1, &st, &err)) {
        json_decref(body);
        wlm_http_respond_werr(req, &err);
        return;
    }
    const char *ename = json_string_value(json_object_get(body, "error"));
    int ok = !strcmp(st, "succeeded");
    wlm_strlcpy(a->error_name, ename ? ename : "", sizeof(a->error_name));
    if (!ok && a->kind == PLACEMENT_ACT_RESIZE && ename && !strcmp(ename, "unsupported")) {
        /* The driver cannot cap CPU (the test driver): the allocation is
         * still what the placement decided, only not enforced; the node is
         * not asked again. */
        note_unsupported(c, a, json_string_value(json_object_get(body, "detail")));
        ok = 1;
    }
    if (!ok && a->kind == PLACEMENT_ACT_STOP_INSTANCE && ename && !strcmp(ename, "not_found"))
        ok = 1; /* already gone: what the stop wanted */
    action_completed(c, a, ok, json_string_value(json_object_get(body, "detail")),
                     json_object_get(body, "result"));
    json_decref(body);
    wlm_http_respond_json(req, 200, json_pack("{s:s}", "status", "recorded"));
}

/* Turn a decision into the plan the executors carry out. */
static void plan_from_decision(struct controller *c, struct solve_work *sw)
{
    const struct placement_decision *d = sw->d;
    c->plan = calloc(d->nactions ? d->nactions : 1, sizeof(*c->plan));
    c->nplan = 0;
    if (!c->plan)
        return;
    /* Every dependency is kept: one dropped would let an arrival start
     * before the memory it needs is freed, or a node power off under a
     * guest. Allocated first, so that running out of memory leaves no plan
     * (the next cycle decides again), not half of one. */
    for (size_t i = 0; i < d->nactions; i++) {
        if (d->actions[i].ndeps &&
            !(c->plan[i].deps = malloc(d->actions[i].ndeps * sizeof(size_t)))) {
            c->nplan = d->nactions;
            ctl_plan_free(c);
            wlm_errorlog(CTL_COMP, "no memory for the plan's dependencies", "actions=%zu",
                      d->nactions);
            return;
        }
    }
    c->plan_seq++;
    for (size_t i = 0; i < d->nactions; i++) {
        const struct placement_action *pa = &d->actions[i];
        struct ctl_action *a = &c->plan[c->nplan++];
        snprintf(a->id, sizeof(a->id), "p%u-%u-%zu", (unsigned)(wlm_now_wall()) % 100000000u,
                 c->plan_seq, i);
        a->kind = pa->kind;
        a->cpu_mhz = pa->cpu_mhz;
        a->memory_mb = pa->memory_mb;
        if (pa->node >= 0 && (size_t)pa->node < sw->p->nnodes)
            wlm_strlcpy(a->node, sw->node_names[pa->node], sizeof(a->node));
        if (pa->kind == PLACEMENT_ACT_MIGRATE_JOB && pa->from_node >= 0) {
            /* The source agent carries out a migration. */
            wlm_strlcpy(a->dest_node, a->node, sizeof(a->dest_node));
            wlm_strlcpy(a->from_node, sw->node_names[pa->from_node], sizeof(a->from_node));
            wlm_strlcpy(a->node, a->from_node, sizeof(a->node));
        }
        if (pa->ndeps) /* a->deps was allocated above */
            memcpy(a->deps, pa->deps, pa->ndeps * sizeof(*a->deps));
        a->ndeps = pa->ndeps;
        if (pa->workload != (size_t)-1 && pa->workload < sw->p->nworkloads) {
            const struct wl_ref *r = &sw->refs[pa->workload];
            a->is_job = r->is_job;
            a->job = r->job;
            wlm_strlcpy(a->app, r->app, sizeof(a->app));
        }
        if (!a->is_job && a->app[0] && pa->kind == PLACEMENT_ACT_START_INSTANCE) {
            struct ctl_instance *p = realloc(c->insts, (c->ninsts + 1) * sizeof(*p));
            if (!p)
                continue;
            c->insts = p;
            struct ctl_instance *in = &c->insts[c->ninsts++];
            memset(in, 0, sizeof(*in));
            snprintf(in->id, sizeof(in->id), "%s-%u", a->app, ++c->inst_seq);
            wlm_strlcpy(in->app, a->app, sizeof(in->app));
            wlm_strlcpy(in->node, a->node, sizeof(in->node));
            const struct ctl_node *n = ctl_node_find(c, a->node);
            if (n)
                ctl_node_host(n, in->host, sizeof(in->host));
            in->port = c->next_port++;
            in->cpu_mhz = a->cpu_mhz;
            in->state = CTL_INST_STARTING;
            wlm_strlcpy(a->instance, in->id, sizeof(a->instance));
            ctl_instances_save(c);
        } else if (!a->is_job && a->app[0]) {
            struct ctl_instance *in = ctl_inst_find(c, a->app, a->node);
            if (in)
                wlm_strlcpy(a->instance, in->id, sizeof(a->instance));
        }
    }
}

/* The placement may plan more job starts on a node than its agent has VM
 * slots for (it knows only which nodes have a free slot): those beyond are
 * not sent, so they cannot fail; the jobs stay queued for the next
 * decision, which sees the slots taken. */
static void plan_defer_starts(struct controller *c)
{
    json_t *used = json_object();
    for (size_t i = 0; i < c->nplan; i++) {
        struct ctl_action *a = &c->plan[i];
        const char *node = a->kind == PLACEMENT_ACT_MIGRATE_JOB ? a->dest_node : a->node;
        if (a->kind != PLACEMENT_ACT_START_JOB && a->kind != PLACEMENT_ACT_RESTORE_JOB &&
            a->kind != PLACEMENT_ACT_MIGRATE_JOB)
            continue;
        struct ctl_node *n = ctl_node_find(c, node);
        long free_slots = n ? ctl_node_free_slots(c, n) : -1;
        if (free_slots < 0)
            continue;
        long k = (long)json_integer_value(json_object_get(used, node));
        /* A migration takes a slot too, but is never deferred: a power-off
         * may wait on it (its failure is handled, its silence would not be). */
        if (k < free_slots || a->kind == PLACEMENT_ACT_MIGRATE_JOB) {
            json_object_set_new(used, node, json_integer(k + 1));
            continue;
        }
        a->st = CTL_ACT_DONE;
        a->sent_at = a->done_at = wlm_now_mono();
        snprintf(a->error, sizeof(a->error), "deferred: no free VM slot on %s", node);
        wlm_info(CTL_COMP, "job start deferred: no free VM slot", "job=%lld node=%s kind=%s",
                 (long long)a->job, node, ctl_agent_kind(a));
    }
    json_decref(used);
}

/* Resizes a node said it cannot do are not sent: the allocation is
 * recorded as decided (it is what the placement works with), unenforced. */
static void plan_skip_unsupported(struct controller *c)
{
    for (size_t i = 0; i < c->nplan; i++) {
        struct ctl_action *a = &c->plan[i];
        if (a->kind != PLACEMENT_ACT_RESIZE || !ctl_node_unsupported(c, a->node, ctl_agent_kind(a)))
            continue;
        a->st = CTL_ACT_DONE;
        a->sent_at = a->done_at = wlm_now_mono();
        action_apply(c, a, NULL);
    }
}

static json_t *decision_summary(struct controller *c, const struct solve_work *sw)
{
    const struct placement_decision *d = sw->d;
    json_t *acts = json_array();
    for (size_t i = 0; i < d->nactions; i++) {
        const struct placement_action *pa = &d->actions[i];
        json_t *o = json_pack("{s:s}", "kind", placement_action_name(pa->kind));
        if (pa->workload != (size_t)-1 && pa->workload < sw->p->nworkloads)
            json_object_set_new(o, "workload", json_string(sw->p->workloads[pa->workload].name));
        if (pa->node >= 0)
            json_object_set_new(o, "node", json_string(sw->node_names[pa->node]));
        if (pa->from_node >= 0)
            json_object_set_new(o, "from", json_string(sw->node_names[pa->from_node]));
        json_object_set_new(o, "cpu_mhz", json_real(pa->cpu_mhz));
        json_array_append_new(acts, o);
    }
    json_t *off = json_array();
    for (size_t n = 0; n < sw->p->nnodes; n++)
        if (!d->node_on[n])
            json_array_append_new(off, json_string(sw->node_names[n]));
    return json_pack("{s:f, s:s, s:f, s:f, s:f, s:f, s:b, s:s, s:o, s:o, s:f}", "decided_at",
                     wlm_now_wall(), "solver", placement_solver_name(d->solver), "min_utility",
                     d->min_utility, "upper_bound", d->upper_bound, "gap",
                     isfinite(d->gap) ? d->gap : 0.0, "current_min_utility", d->current_min_utility,
                     "kept_current", d->kept_current, "note", d->note, "actions", acts,
                     "powered_off", off, "solve_seconds", sw->seconds);
}

static void solve_after(uv_work_t *w, int status)
{
    struct solve_work *sw = w->data;
    struct controller *c = sw->c;
    c->solving = 0;
    if (status == UV_ECANCELED || !c->started) {
        ctl_solve_work_free(sw);
        return;
    }
    if (sw->rc) {
        wlm_errorlog(CTL_COMP, "placement failed", "detail=\"%s\"", sw->err.msg);
        ctl_solve_work_free(sw);
        return;
    }
    const struct placement_decision *d = sw->d;
    wlm_info(CTL_COMP, "placement decided",
             "solver=%s min_utility=%.3f bound=%.3f actions=%zu seconds=%.3f note=\"%s\"",
             placement_solver_name(d->solver), d->min_utility, d->upper_bound, d->nactions,
             sw->seconds, d->note);
    json_decref(c->last_decision);
    c->last_decision = decision_summary(c, sw);
    /* What it was decided on, so `wlm plan` can replay it exactly. */
    json_decref(c->last_problem);
    c->last_problem = ctl_snapshot_json(sw);
    json_object_set_new(c->last_problem, "decision", placement_decision_to_json(sw->p, d));
    wlm_gauge_set(wlm_metrics_gauge(c->metrics, "wlm_placement_min_utility",
                                    "Minimum utility of the last placement decision.", NULL),
                  d->min_utility);
    wlm_gauge_set(wlm_metrics_gauge(c->metrics, "wlm_placement_solve_seconds",
                                    "Time of the last placement solve.", NULL),
                  sw->seconds);
    /* Allocation changes of running work are applied right away; they are
     * also in the plan as resize actions for the agents to enforce. */
    plan_from_decision(c, sw);
    plan_skip_unsupported(c);
    plan_defer_starts(c);
    ctl_solve_work_free(sw);
    ctl_events_broadcast(c, "placement", json_incref(c->last_decision));
    ctl_dispatch(c);
}

void ctl_place_tick(struct controller *c)
{
    ctl_pool_hints(c);
    /* Nothing is decided while actions from before a restart are unsettled:
     * the state they are about to change is not known yet. */
    if (c->solving || c->nplan || c->nsettle)
        return;
    double now = wlm_now_wall();
    struct solve_work *sw = ctl_build_problem(c, now);
    if (!sw)
        return;
    struct wlm_error err = {0};
    if (placement_problem_check(sw->p, &err)) {
        wlm_errorlog(CTL_COMP, "placement problem rejected", "detail=\"%s\"", err.msg);
        ctl_solve_work_free(sw);
        return;
    }
    sw->w.data = sw;
    c->solving = 1;
    if (uv_queue_work(c->loop, &sw->w, ctl_solve_run, solve_after)) {
        c->solving = 0;
        ctl_solve_work_free(sw);
    }
}

/* Fail actions the agents never confirmed, so a lost notification or a dead
 * agent cannot stall the controller. */
void ctl_check_timeouts(struct controller *c)
{
    double now = wlm_now_mono();
    int changed = 0;
    for (size_t i = 0; i < c->nplan; i++) {
        struct ctl_action *a = &c->plan[i];
        if (a->st == CTL_ACT_SENT && now - a->sent_at > c->cfg.action_timeout_ms / 1000.0) {
            ctl_action_failed(c, a, "no completion from the node agent in time");
            changed = 1;
        }
    }
    if (changed)
        ctl_dispatch(c);
    ctl_settle_timeouts(c);
}
