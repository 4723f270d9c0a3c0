/* cycle.c - the placement side of the control cycle and its executors.
 *
 * Every placement period the controller builds a placement problem from
 * what it knows (READY nodes and their power state, deployed applications
 * with the utility functions the flow controller learned, placeable jobs
 * with the job estimator's utility curves, and where everything runs now),
 * solves it on the thread pool with the pure placement core, and carries
 * out the ordered action list through the node agents: an action is sent
 * when every action it depends on has completed, and completes when the
 * agent posts /v1/actions/ID/complete. No new decision is taken while a
 * plan is being carried out, so decisions never race each other. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define CTL_COMP "controller"

struct ctl_node *ctl_node_find(struct controller *c, const char *name)
{
    for (size_t i = 0; i < c->nnodes; i++)
        if (!strcmp(c->nodes[i].name, name))
            return &c->nodes[i];
    return NULL;
}

static int node_powered_on(const struct ctl_node *n)
{
    json_t *p = n->report ? json_object_get(n->report, "power") : NULL;
    const char *st = p ? json_string_value(json_object_get(p, "state")) : NULL;
    return !st || strcmp(st, "off") != 0;
}

/* The host part of the node's agent URL: where its instances listen. */
static void node_host(const struct ctl_node *n, char *out, size_t size)
{
    const char *p = n->agent_url[0] ? n->agent_url + 7 : "127.0.0.1";
    size_t len = strcspn(p, ":/");
    snprintf(out, size, "%.*s", (int)len, p);
}

double ctl_app_allocation(const struct controller *c, const char *app)
{
    double sum = 0;
    for (size_t i = 0; i < c->ninsts; i++)
        if (!strcmp(c->insts[i].app, app) && c->insts[i].state == CTL_INST_RUNNING)
            sum += c->insts[i].cpu_mhz;
    return sum;
}

static struct ctl_instance *inst_find(struct controller *c, const char *app, const char *node)
{
    for (size_t i = 0; i < c->ninsts; i++)
        if (!strcmp(c->insts[i].app, app) && !strcmp(c->insts[i].node, node))
            return &c->insts[i];
    return NULL;
}

static struct ctl_instance *inst_by_id(struct controller *c, const char *id)
{
    for (size_t i = 0; i < c->ninsts; i++)
        if (!strcmp(c->insts[i].id, id))
            return &c->insts[i];
    return NULL;
}

static void inst_remove(struct controller *c, struct ctl_instance *in)
{
    size_t i = (size_t)(in - c->insts);
    memmove(in, in + 1, (c->ninsts - i - 1) * sizeof(*in));
    c->ninsts--;
}

/* The instance table is small: rewrite it whole in one transaction each
 * time it changes. */
static void instances_save(struct controller *c)
{
    struct wlm_error err = {0};
    if (wlm_db_begin(c->db, &err) || wlm_db_exec(c->db, "DELETE FROM instances", &err))
        goto fail;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(c->db,
                           "INSERT INTO instances(id, app, node, host, port, cpu_mhz, state)"
                           " VALUES (?,?,?,?,?,?,?)",
                           -1, &st, NULL) != SQLITE_OK) {
        wlm_error_set(&err, WLM_EIO, "%s", sqlite3_errmsg(c->db));
        goto fail;
    }
    for (size_t i = 0; i < c->ninsts; i++) {
        const struct ctl_instance *in = &c->insts[i];
        sqlite3_reset(st);
        sqlite3_bind_text(st, 1, in->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, in->app, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, in->node, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, in->host, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 5, in->port);
        sqlite3_bind_double(st, 6, in->cpu_mhz);
        sqlite3_bind_int(st, 7, (int)in->state);
        if (sqlite3_step(st) != SQLITE_DONE) {
            wlm_error_set(&err, WLM_EIO, "%s", sqlite3_errmsg(c->db));
            sqlite3_finalize(st);
            goto fail;
        }
    }
    sqlite3_finalize(st);
    if (wlm_db_commit(c->db, &err))
        goto fail;
    return;
fail:
    wlm_db_rollback(c->db);
    wlm_errorlog(CTL_COMP, "saving app instances failed", "detail=\"%s\"", err.msg);
}

int ctl_instances_load(struct controller *c, struct wlm_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(c->db,
                           "SELECT id, app, node, host, port, cpu_mhz, state FROM instances",
                           -1, &st, NULL) != SQLITE_OK)
        return wlm_error_set(err, WLM_EIO, "load instances: %s", sqlite3_errmsg(c->db));
    while (sqlite3_step(st) == SQLITE_ROW) {
        struct ctl_instance *p = realloc(c->insts, (c->ninsts + 1) * sizeof(*p));
        if (!p)
            break;
        c->insts = p;
        struct ctl_instance *in = &c->insts[c->ninsts++];
        memset(in, 0, sizeof(*in));
        wlm_strlcpy(in->id, (const char *)sqlite3_column_text(st, 0), sizeof(in->id));
        wlm_strlcpy(in->app, (const char *)sqlite3_column_text(st, 1), sizeof(in->app));
        wlm_strlcpy(in->node, (const char *)sqlite3_column_text(st, 2), sizeof(in->node));
        wlm_strlcpy(in->host, (const char *)sqlite3_column_text(st, 3), sizeof(in->host));
        in->port = sqlite3_column_int(st, 4);
        in->cpu_mhz = sqlite3_column_double(st, 5);
        in->state = CTL_INST_RUNNING;
        in->unconfirmed = 1;
        /* Fresh ids and ports never collide with what may still run. */
        const char *dash = strrchr(in->id, '-');
        unsigned seq = dash ? (unsigned)strtoul(dash + 1, NULL, 10) : 0;
        if (seq > c->inst_seq)
            c->inst_seq = seq;
        if (in->port >= c->next_port)
            c->next_port = in->port + 1;
    }
    sqlite3_finalize(st);
    if (c->ninsts)
        wlm_info(CTL_COMP, "app instances recorded before the restart", "count=%zu",
                 c->ninsts);
    return 0;
}

static void count_instances(struct controller *c)
{
    instances_save(c);
    for (size_t a = 0; a < c->napps; a++) {
        c->apps[a].ninstances = 0;
        for (size_t i = 0; i < c->ninsts; i++)
            if (!strcmp(c->insts[i].app, c->apps[a].name) &&
                c->insts[i].state == CTL_INST_RUNNING)
                c->apps[a].ninstances++;
    }
}

/* ------------------------------------------------------------ solving */

/* What a workload index of the problem stands for. */
struct wl_ref {
    int is_job;
    int64_t job;
    char app[64];
};

struct solve_work {
    uv_work_t w;
    struct controller *c;
    struct placement_problem *p;
    struct wl_ref *refs;
    char (*node_names)[64];
    struct placement_decision *d;
    struct wlm_error err;
    int rc;
    double started, seconds;
};

static json_t *snapshot_json(const struct solve_work *sw);

static void solve_run(uv_work_t *w)
{
    struct solve_work *sw = w->data;
    double t0 = wlm_now_mono();
    sw->rc = placement_solve(sw->p, &sw->d, &sw->err);
    sw->seconds = wlm_now_mono() - t0;
}

/* A job's placement curve: jobsched's valuation for this controller's
 * placement period and action durations (the same function and settings
 * rule wlm-sim uses). */
void ctl_placement_options(const struct controller *c, struct placement_options *o)
{
    placement_options_default(o);
    o->power_saving = c->cfg.power_saving;
    o->headroom = c->cfg.headroom;
    if (!strcmp(c->cfg.solver, "exact"))
        o->solver = PLACEMENT_SOLVER_EXACT;
    else if (!strcmp(c->cfg.solver, "heuristic"))
        o->solver = PLACEMENT_SOLVER_HEURISTIC;
    o->time_limit_s = 1.0;
}

void ctl_job_curve(const struct controller *c, const struct jobsched_job *job, double now,
                   struct placement_utility *u)
{
    struct placement_options opts, *o = &opts;
    ctl_placement_options(c, o);
    struct jobsched_valuation v;
    jobsched_valuation_init(&v, (double)c->cfg.placement_period_ms / 1000.0,
                            o->cost[PLACEMENT_ACT_START_JOB].duration_s,
                            o->cost[PLACEMENT_ACT_RESTORE_JOB].duration_s);
    struct jobsched_point pts[PLACEMENT_UTILITY_MAX_POINTS];
    size_t np = jobsched_placement_curve(job, now, &v, pts, PLACEMENT_UTILITY_MAX_POINTS);
    u->npoints = np;
    for (size_t k = 0; k < np; k++) {
        u->cpu_mhz[k] = pts[k].x;
        u->util[k] = pts[k].y;
    }
}

static enum placement_job_state job_state_of(enum jobsched_state s)
{
    switch (s) {
    case JOBSCHED_RUNNING:
    case JOBSCHED_STARTING:
    case JOBSCHED_MIGRATING: return PLACEMENT_JOB_RUNNING;
    case JOBSCHED_PAUSED: return PLACEMENT_JOB_PAUSED;
    case JOBSCHED_SUSPENDED: return PLACEMENT_JOB_SUSPENDED;
    default: return PLACEMENT_JOB_QUEUED;
    }
}

static long node_index(char (*names)[64], size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(names[i], name))
            return (long)i;
    return -1;
}

/* Build the problem from the controller's state. Returns NULL when there is
 * nothing to decide (no READY node). */
static struct solve_work *build_problem(struct controller *c, double now)
{
    size_t nready = 0;
    for (size_t i = 0; i < c->nnodes; i++)
        nready += c->nodes[i].state == CONTROLLER_NODE_READY;
    if (!nready)
        return NULL;
    size_t njobs = jobsched_placeable(c->js, NULL, 0);
    const struct jobsched_job **jobs = calloc(njobs ? njobs : 1, sizeof(*jobs));
    struct solve_work *sw = calloc(1, sizeof(*sw));
    struct placement_problem *p = calloc(1, sizeof(*p));
    if (!sw || !p || !jobs)
        goto oom;
    njobs = jobsched_placeable(c->js, jobs, njobs);
    sw->c = c;
    sw->p = p;
    ctl_placement_options(c, &p->opts);

    p->nodes = calloc(nready, sizeof(*p->nodes));
    sw->node_names = calloc(nready, sizeof(*sw->node_names));
    size_t nw = c->napps + njobs;
    p->workloads = calloc(nw ? nw : 1, sizeof(*p->workloads));
    sw->refs = calloc(nw ? nw : 1, sizeof(*sw->refs));
    p->current = calloc(c->ninsts + njobs + 1, sizeof(*p->current));
    if (!p->nodes || !sw->node_names || !p->workloads || !sw->refs || !p->current)
        goto oom;
    double max_node_mhz = 0;
    for (size_t i = 0; i < c->nnodes; i++) {
        const struct ctl_node *n = &c->nodes[i];
        if (n->state != CONTROLLER_NODE_READY)
            continue;
        struct placement_node *pn = &p->nodes[p->nnodes];
        wlm_strlcpy(pn->name, n->name, sizeof(pn->name));
        wlm_strlcpy(sw->node_names[p->nnodes], n->name, 64);
        pn->cores = (int)n->cores;
        pn->mhz_per_core = n->mhz;
        pn->memory_mb = (double)n->memory_mb;
        pn->powered_on = node_powered_on(n);
        pn->can_power_off = c->cfg.power_saving;
        pn->power_idle_w = 100;
        pn->power_max_w = 250;
        if (n->cores * n->mhz > max_node_mhz)
            max_node_mhz = (double)n->cores * n->mhz;
        /* Labels as "k=v" items, matching jobs' label requirements. */
        const char *k;
        json_t *v;
        size_t used = 0;
        json_object_foreach(n->labels, k, v) {
            int w = snprintf(pn->labels + used, sizeof(pn->labels) - used, "%s%s=%s",
                             used ? "," : "", k, json_string_value(v));
            if (w < 0 || (size_t)w >= sizeof(pn->labels) - used)
                break;
            used += (size_t)w;
        }
        p->nnodes++;
    }
    for (size_t a = 0; a < c->napps; a++) {
        const struct ctl_app *app = &c->apps[a];
        struct placement_workload *w = &p->workloads[p->nworkloads];
        snprintf(w->name, sizeof(w->name), "%s", app->name);
        w->kind = PLACEMENT_APP;
        w->memory_mb = app->memory_mb;
        w->max_cpu_per_instance = app->max_cpu_mhz > 0 ? app->max_cpu_mhz : max_node_mhz;
        w->min_instances = (int)app->min_instances;
        w->max_instances = (int)app->max_instances;
        w->cur_node = -1;
        ctl_app_utility(c, app, &w->utility);
        sw->refs[p->nworkloads].is_job = 0;
        wlm_strlcpy(sw->refs[p->nworkloads].app, app->name, 64);
        for (size_t i = 0; i < c->ninsts; i++) {
            const struct ctl_instance *in = &c->insts[i];
            long ni = node_index(sw->node_names, p->nnodes, in->node);
            if (strcmp(in->app, app->name) || ni < 0 || in->state == CTL_INST_STOPPING)
                continue;
            p->current[p->ncurrent++] =
                (struct placement_assign){p->nworkloads, (size_t)ni, in->cpu_mhz};
        }
        p->nworkloads++;
    }
    for (size_t j = 0; j < njobs; j++) {
        const struct jobsched_job *job = jobs[j];
        struct placement_workload *w = &p->workloads[p->nworkloads];
        snprintf(w->name, sizeof(w->name), "job-%lld", (long long)job->id);
        w->kind = PLACEMENT_JOB;
        w->memory_mb = (double)job->memory_mb;
        w->max_cpu_per_instance = jobsched_job_max_mhz(job);
        w->min_instances = 0;
        w->max_instances = 1;
        w->migratable = 1;
        w->whole = 1;
        w->stall_cost = jobsched_stall_cost(job);
        /* An action in flight (start, migration) is not the decision's to
         * undo: the job stays where it goes, with what it was given. */
        w->busy = job->state == JOBSCHED_STARTING || job->state == JOBSCHED_MIGRATING;
        ctl_job_curve(c, job, now, &w->utility);
        for (size_t l = 0, used = 0; l < job->req.nlabels; l++) {
            int n = snprintf(w->requires + used, sizeof(w->requires) - used, "%s%s=%s",
                             used ? "," : "", job->req.labels[l].key, job->req.labels[l].value);
            if (n < 0 || (size_t)n >= sizeof(w->requires) - used)
                break;
            used += (size_t)n;
        }
        w->state = job_state_of(job->state);
        long ni = job->node[0] ? node_index(sw->node_names, p->nnodes, job->node) : -1;
        w->cur_node = (int)ni;
        if ((w->state == PLACEMENT_JOB_RUNNING || w->state == PLACEMENT_JOB_PAUSED) && ni < 0) {
            /* Its node is gone: the job's last save file is its only copy. */
            w->state = PLACEMENT_JOB_SUSPENDED;
        }
        if (ni >= 0 && (w->state == PLACEMENT_JOB_RUNNING || w->state == PLACEMENT_JOB_PAUSED))
            p->current[p->ncurrent++] = (struct placement_assign){
                p->nworkloads, (size_t)ni,
                w->state == PLACEMENT_JOB_PAUSED ? 0 : job->alloc_mhz};
        sw->refs[p->nworkloads].is_job = 1;
        sw->refs[p->nworkloads].job = job->id;
        p->nworkloads++;
    }
    /* Power saving packs what runs; it must not keep waiting work (queued
     * or suspended jobs) off a node that could run it, or a job would wait
     * until it is late just to keep a server dark. */
    for (size_t w = 0; w < p->nworkloads; w++)
        if (p->workloads[w].kind == PLACEMENT_JOB &&
            (p->workloads[w].state == PLACEMENT_JOB_QUEUED ||
             p->workloads[w].state == PLACEMENT_JOB_SUSPENDED))
            p->opts.power_saving = 0;
    free(jobs);
    return sw;
oom:
    free(jobs);
    if (sw) {
        free(sw->refs);
        free(sw->node_names);
        free(sw);
    }
    placement_problem_free(p);
    return NULL;
}

static void solve_work_free(struct solve_work *sw)
{
    placement_decision_free(sw->d);
    placement_problem_free(sw->p);
    free(sw->refs);
    free(sw->node_names);
    free(sw);
}

/* ------------------------------------------------------------ executors */

static int job_has_save(const struct controller *c, int64_t id)
{
    char key[32];
    snprintf(key, sizeof(key), "%lld", (long long)id);
    return json_object_get(c->saved_jobs, key) != NULL;
}

static const char *agent_kind(const struct ctl_action *a)
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

static void job_transition(struct controller *c, int64_t id, enum jobsched_state to,
                           const char *reason)
{
    const struct jobsched_job *j = jobsched_get(c->js, id);
    if (!j || j->state == to || !jobsched_transition_allowed(j->state, to))
        return;
    struct wlm_error err = {0};
    if (jobsched_transition(c->js, id, to, wlm_now_wall(), reason, &err))
        wlm_warn(CTL_COMP, "job transition refused", "job=%lld to=%s detail=\"%s\"",
                 (long long)id, jobsched_state_name(to), err.msg);
}

static void job_place(struct controller *c, int64_t id, const char *node, double mhz)
{
    struct wlm_error err = {0};
    if (jobsched_set_placement(c->js, id, node, mhz, wlm_now_wall(), &err))
        wlm_warn(CTL_COMP, "recording job placement failed", "job=%lld detail=\"%s\"",
                 (long long)id, err.msg);
}

/* The state changes an action makes once the agent confirms it. */
static void action_apply(struct controller *c, struct ctl_action *a, const json_t *result)
{
    struct ctl_instance *in = a->instance[0] ? inst_by_id(c, a->instance) : NULL;
    char reason[160];
    snprintf(reason, sizeof(reason), "placement: %s on %s", agent_kind(a), a->node);
    switch (a->kind) {
    case PLACEMENT_ACT_START_INSTANCE:
        if (in)
            in->state = CTL_INST_RUNNING;
        break;
    case PLACEMENT_ACT_STOP_INSTANCE:
        if (in)
            inst_remove(c, in);
        break;
    case PLACEMENT_ACT_RESIZE:
        if (in)
            in->cpu_mhz = a->cpu_mhz;
        else if (a->is_job)
            job_place(c, a->job, a->node, a->cpu_mhz);
        break;
    case PLACEMENT_ACT_START_JOB:
    case PLACEMENT_ACT_RESTORE_JOB:
    case PLACEMENT_ACT_RESUME_JOB:
        job_transition(c, a->job, JOBSCHED_RUNNING, reason);
        job_place(c, a->job, a->node, a->cpu_mhz);
        break;
    case PLACEMENT_ACT_MIGRATE_JOB:
        job_transition(c, a->job, JOBSCHED_RUNNING, reason);
        job_place(c, a->job, a->dest_node, a->cpu_mhz);
        break;
    case PLACEMENT_ACT_PAUSE_JOB:
        job_transition(c, a->job, JOBSCHED_PAUSED, reason);
        job_place(c, a->job, a->node, 0);
        break;
    case PLACEMENT_ACT_SUSPEND_JOB: {
        job_transition(c, a->job, JOBSCHED_SUSPENDED, reason);
        job_place(c, a->job, NULL, 0);
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
            json_object_set_new(p, "state", json_string(a->kind == PLACEMENT_ACT_POWER_ON
                                                             ? "on" : "off"));
        }
        wlm_info(CTL_COMP, a->kind == PLACEMENT_ACT_POWER_ON ? "node powered on"
                                                             : "node powered off",
                 "node=%s", a->node);
        break;
    }
    default:
        break;
    }
    (void)result;
    count_instances(c);
}

/* An action that could not be carried out: undo what sending it started. */
static void action_failed(struct controller *c, struct ctl_action *a, const char *why)
{
    a->st = CTL_ACT_FAILED;
    a->done_at = wlm_now_mono();
    wlm_strlcpy(a->error, why, sizeof(a->error));
    wlm_warn(CTL_COMP, "action failed", "id=%s kind=%s node=%s error=\"%s\"", a->id,
             agent_kind(a), a->node, why);
    struct ctl_instance *in = a->instance[0] ? inst_by_id(c, a->instance) : NULL;
    if (a->kind == PLACEMENT_ACT_START_INSTANCE && in)
        inst_remove(c, in);
    else if (a->kind == PLACEMENT_ACT_STOP_INSTANCE && in)
        in->state = CTL_INST_RUNNING;
    else if (a->kind == PLACEMENT_ACT_START_JOB)
        job_transition(c, a->job, JOBSCHED_ELIGIBLE, "start failed; will be placed again");
    else if (a->kind == PLACEMENT_ACT_MIGRATE_JOB)
        job_transition(c, a->job, JOBSCHED_RUNNING, "migration failed; still on its node");
    wlm_counter_add(wlm_metrics_counter(c->metrics, "wlm_actions_failed_total",
                                        "Placement actions that failed.", NULL),
                    1);
    count_instances(c);
}

static void dispatch(struct controller *c);

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

static void action_completed(struct controller *c, struct ctl_action *a, int ok,
                             const char *detail, const json_t *result)
{
    if (a->st == CTL_ACT_DONE || a->st == CTL_ACT_FAILED)
        return;
    if (ok) {
        a->st = CTL_ACT_DONE;
        a->done_at = wlm_now_mono();
        wlm_info(CTL_COMP, "action done", "id=%s kind=%s node=%s seconds=%.2f", a->id,
                 agent_kind(a), a->node, a->done_at - a->sent_at);
        action_apply(c, a, result);
    } else {
        action_failed(c, a, detail && *detail ? detail : "the node agent reported failure");
    }
    if (a->kind == PLACEMENT_ACT_START_INSTANCE || a->kind == PLACEMENT_ACT_STOP_INSTANCE ||
        (a->kind == PLACEMENT_ACT_RESIZE && !a->is_job))
        ctl_router_push(c, 0);
    dispatch(c);
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
        action_failed(c, a, err->msg);
        dispatch(c);
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
    char msg[256];
    snprintf(msg, sizeof(msg), "agent answered %d: %s", resp->status, detail ? detail : "");
    json_decref(v);
    /* A resize the driver cannot do is not a failure of the plan: the
     * allocation is still what the placement decided, only not enforced. */
    if (a->kind == PLACEMENT_ACT_RESIZE && resp->status == 501) {
        wlm_debug(CTL_COMP, "resize not enforced", "id=%s detail=\"%s\"", a->id, msg);
        action_completed(c, a, 1, NULL, NULL);
        return;
    }
    action_failed(c, a, msg);
    dispatch(c);
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
    json_t *b = json_pack("{s:s, s:s}", "id", a->id, "kind", agent_kind(a));
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
        const struct ctl_instance *in = inst_by_id(c, a->instance);
        json_object_set_new(b, "command",
                            json_string(app ? json_string_value(json_object_get(app->spec,
                                                                                "command"))
                                            : ""));
        json_object_set_new(b, "port", json_integer(in ? in->port : 0));
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
        if (j) {
            json_object_set_new(b, "command", json_string(j->command ? j->command : "true"));
            if (a->kind == PLACEMENT_ACT_START_JOB) {
                json_object_set_new(b, "vcpus", json_integer(j->threads > 0 ? j->threads : 1));
                json_object_set_new(b, "memory_mb", json_integer(j->memory_mb < 32 ? 32
                                                                                   : j->memory_mb));
            }
        }
        break;
    case PLACEMENT_ACT_MIGRATE_JOB: {
        const struct ctl_node *d = ctl_node_find(c, a->dest_node);
        json_object_set_new(b, "target", json_string(d ? d->agent_url : ""));
        break;
    }
    default:
        break;
    }
    return b;
}

static void action_send(struct controller *c, struct ctl_action *a)
{
    const struct ctl_node *n = ctl_node_find(c, a->node);
    a->st = CTL_ACT_SENT;
    a->sent_at = wlm_now_mono();
    if (!n || !n->agent_url[0]) {
        action_failed(c, a, "the node has no agent URL");
        return;
    }
    if (a->kind == PLACEMENT_ACT_START_JOB)
        job_transition(c, a->job, JOBSCHED_STARTING, "placement: starting");
    else if (a->kind == PLACEMENT_ACT_MIGRATE_JOB)
        job_transition(c, a->job, JOBSCHED_MIGRATING, "placement: migrating");
    else if (a->kind == PLACEMENT_ACT_STOP_INSTANCE) {
        struct ctl_instance *in = inst_by_id(c, a->instance);
        if (in) {
            /* Out of the router first, so no request is sent to it as it stops. */
            in->state = CTL_INST_STOPPING;
            ctl_router_push(c, 0);
        }
    }
    json_t *body = action_body(c, a);
    if (a->kind == PLACEMENT_ACT_RESTORE_JOB && !job_has_save(c, a->job)) {
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
    wlm_info(CTL_COMP, "action sent", "id=%s kind=%s node=%s", a->id, agent_kind(a), a->node);
    if (wlm_http_client_request(c->client, "POST", url, c->token, "application/json", text,
                                strlen(text), 10000, on_sent, sc) < 0) {
        free(sc);
        action_failed(c, a, "could not send the request to the agent");
    }
    free(url);
    free(text);
}

/* Send every waiting action whose dependencies are done; fail those whose
 * dependencies failed. Ends the plan when nothing is left. */
static void dispatch(struct controller *c)
{
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
                action_failed(c, a, "an action it depends on failed");
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
        free(c->plan);
        c->plan = NULL;
        c->nplan = 0;
        ctl_events_broadcast(c, "plan", json_pack("{s:I,s:I}", "actions", (json_int_t)0,
                                                   "failed", (json_int_t)failed));
    }
}

/* POST /v1/actions/:id/complete from a node agent. */
static void handle_complete(struct wlm_http_req *req, void *ud)
{
    struct controller *c = ud;
    struct ctl_action *a = plan_find(c, req->params[0]);
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
    if (!ok && a->kind == PLACEMENT_ACT_RESIZE && ename && !strcmp(ename, "unsupported")) {
        /* The driver cannot cap CPU (the test driver): the allocation is
         * still what the placement decided, only not enforced. */
        wlm_debug(CTL_COMP, "resize not enforced", "id=%s detail=\"%s\"", a->id,
                  json_string_value(json_object_get(body, "detail")));
        ok = 1;
    }
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
    c->plan_seq++;
    for (size_t i = 0; i < d->nactions; i++) {
        const struct placement_action *pa = &d->actions[i];
        struct ctl_action *a = &c->plan[c->nplan++];
        memset(a, 0, sizeof(*a));
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
        for (size_t k = 0; k < pa->ndeps && a->ndeps < WLM_ARRAY_LEN(a->deps); k++)
            a->deps[a->ndeps++] = pa->deps[k];
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
                node_host(n, in->host, sizeof(in->host));
            in->port = c->next_port++;
            in->cpu_mhz = a->cpu_mhz;
            in->state = CTL_INST_STARTING;
            wlm_strlcpy(a->instance, in->id, sizeof(a->instance));
            instances_save(c);
        } else if (!a->is_job && a->app[0]) {
            struct ctl_instance *in = inst_find(c, a->app, a->node);
            if (in)
                wlm_strlcpy(a->instance, in->id, sizeof(a->instance));
        }
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
            json_object_set_new(o, "workload",
                                json_string(sw->p->workloads[pa->workload].name));
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
                     isfinite(d->gap) ? d->gap : 0.0, "current_min_utility",
                     d->current_min_utility, "kept_current", d->kept_current, "note", d->note,
                     "actions", acts, "powered_off", off, "solve_seconds", sw->seconds);
}

static void solve_after(uv_work_t *w, int status)
{
    struct solve_work *sw = w->data;
    struct controller *c = sw->c;
    c->solving = 0;
    if (status == UV_ECANCELED || !c->started) {
        solve_work_free(sw);
        return;
    }
    if (sw->rc) {
        wlm_errorlog(CTL_COMP, "placement failed", "detail=\"%s\"", sw->err.msg);
        solve_work_free(sw);
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
    c->last_problem = snapshot_json(sw);
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
    solve_work_free(sw);
    ctl_events_broadcast(c, "placement", json_incref(c->last_decision));
    dispatch(c);
}

static void place_tick(struct controller *c)
{
    if (c->solving || c->nplan)
        return;
    double now = wlm_now_wall();
    struct solve_work *sw = build_problem(c, now);
    if (!sw)
        return;
    struct wlm_error err = {0};
    if (placement_problem_check(sw->p, &err)) {
        wlm_errorlog(CTL_COMP, "placement problem rejected", "detail=\"%s\"", err.msg);
        solve_work_free(sw);
        return;
    }
    sw->w.data = sw;
    c->solving = 1;
    if (uv_queue_work(c->loop, &sw->w, solve_run, solve_after)) {
        c->solving = 0;
        solve_work_free(sw);
    }
}

/* Fail actions the agents never confirmed, so a lost notification or a dead
 * agent cannot stall the controller. */
static void check_timeouts(struct controller *c)
{
    double now = wlm_now_mono();
    int changed = 0;
    for (size_t i = 0; i < c->nplan; i++) {
        struct ctl_action *a = &c->plan[i];
        if (a->st == CTL_ACT_SENT && now - a->sent_at > c->cfg.action_timeout_ms / 1000.0) {
            action_failed(c, a, "no completion from the node agent in time");
            changed = 1;
        }
    }
    if (changed)
        dispatch(c);
}

/* ------------------------------------------------------------ job progress */

static void job_finished(struct controller *c, const struct jobsched_job *j, int ok,
                         const char *why)
{
    int64_t id = j->id;
    char node[64];
    wlm_strlcpy(node, j->node, sizeof(node));
    /* The domain is removed (and its image returned to the pool) by
     * cleanup_ended on the next tick, as for a cancelled job. */
    job_transition(c, id, ok ? JOBSCHED_COMPLETED : JOBSCHED_FAILED, why);
    wlm_info(CTL_COMP, ok ? "job completed" : "job failed", "job=%lld node=%s detail=\"%s\"",
             (long long)id, node, why);
    ctl_events_broadcast(c, "jobs", json_pack("{s:I}", "job", (json_int_t)id));
}

/* A cancelled (or failed) job may still have a domain on its node: remove
 * it and forget the placement. */
static void cleanup_ended(struct controller *c)
{
    size_t n;
    struct jobsched_job *const *jobs = jobsched_jobs(c->js, &n);
    for (size_t i = 0; i < n; i++) {
        const struct jobsched_job *j = jobs[i];
        if (!jobsched_state_terminal(j->state) || !j->node[0])
            continue;
        const struct ctl_node *node = ctl_node_find(c, j->node);
        if (node && node->agent_url[0]) {
            char *url = wlm_asprintf("%s/v1/actions", node->agent_url);
            char *text = wlm_asprintf("{\"id\":\"end-j%lld\",\"kind\":\"destroy\","
                                      "\"job\":\"j%lld\"}",
                                      (long long)j->id, (long long)j->id);
            wlm_http_client_request(c->client, "POST", url, c->token, "application/json", text,
                                    strlen(text), 10000, NULL, NULL);
            free(text);
            free(url);
        }
        wlm_info(CTL_COMP, "removing the domain of an ended job", "job=%lld node=%s state=%s",
                 (long long)j->id, j->node, jobsched_state_name(j->state));
        job_place(c, j->id, NULL, 0);
        jobs = jobsched_jobs(c->js, &n); /* the table may have been rebuilt */
    }
}

/* With simulate_jobs, running jobs advance by their allocation (the test
 * driver runs nothing inside its domains). */
static void simulate_progress(struct controller *c, double now, double dt)
{
    size_t n;
    struct jobsched_job *const *jobs = jobsched_jobs(c->js, &n);
    int64_t *ids = calloc(n ? n : 1, sizeof(*ids));
    size_t nids = 0;
    for (size_t i = 0; ids && i < n; i++)
        if (jobs[i]->state == JOBSCHED_RUNNING && jobs[i]->alloc_mhz > 0)
            ids[nids++] = jobs[i]->id;
    for (size_t i = 0; i < nids; i++) {
        const struct jobsched_job *j = jobsched_get(c->js, ids[i]);
        if (!j)
            continue;
        double speed = j->alloc_mhz;
        double cap = jobsched_job_max_mhz(j);
        if (cap > 0 && speed > cap)
            speed = cap;
        double threads = j->max_speed_mhz > 0 ? ceil(speed / j->max_speed_mhz) : 1;
        double per = threads > 0 ? speed / threads : speed;
        double done = j->done_mcycles + speed * dt;
        double work = j->work_mcycles;
        int64_t id = j->id;
        if (done >= work) {
            /* Finished: record the end first, so the report of the last
             * cycles teaches the profiler a completed run. */
            job_finished(c, j, 1, "work done (simulated by allocation)");
            jobsched_report_usage(c->js, id, work, threads, per, now, NULL);
        } else {
            jobsched_report_usage(c->js, id, done, threads, per, now, NULL);
        }
    }
    free(ids);
}

/* Heartbeat: what the agent says of its jobs and instances. */
/* After a restart, what the agents report settles what the controller
 * was doing when it died: instances it had recorded but that the node no
 * longer runs are dropped; a job recorded as STARTING that runs is RUNNING,
 * and one that does not is placed again; a job the agent holds suspended or
 * paused is recorded so. Grace: the node's agent must have reported a few
 * times since this controller started. */
static void reconcile_after_restart(struct controller *c, struct ctl_node *n, json_t *doms,
                                    json_t *procs, double now)
{
    if (now - c->started_at < 3.0 * (double)c->cfg.flow_period_ms / 1000.0 + 2.0)
        return;
    for (size_t i = 0; i < c->ninsts;) {
        struct ctl_instance *in = &c->insts[i];
        int seen = 0;
        size_t k;
        json_t *p;
        json_array_foreach(procs, k, p) {
            const char *iid = json_string_value(json_object_get(p, "instance"));
            if (iid && !strcmp(iid, in->id))
                seen = 1;
        }
        if (in->unconfirmed && !strcmp(in->node, n->name) && !seen) {
            wlm_warn(CTL_COMP, "recorded app instance is gone", "instance=%s node=%s", in->id,
                     n->name);
            inst_remove(c, in);
            count_instances(c);
            ctl_router_push(c, 0);
            continue;
        }
        i++;
    }
    size_t nj;
    struct jobsched_job *const *jobs = jobsched_jobs(c->js, &nj);
    int64_t *ids = calloc(nj ? nj : 1, sizeof(*ids));
    size_t nids = 0;
    /* A start in flight when the controller died has no node recorded yet:
     * every node's report settles it. */
    for (size_t i = 0; ids && i < nj; i++)
        if (jobs[i]->state == JOBSCHED_STARTING && !c->nplan &&
            (!strcmp(jobs[i]->node, n->name) || !jobs[i]->node[0]))
            ids[nids++] = jobs[i]->id;
    for (size_t i = 0; i < nids; i++) {
        char jid[32];
        snprintf(jid, sizeof(jid), "j%lld", (long long)ids[i]);
        const char *st = NULL;
        size_t k;
        json_t *d;
        json_array_foreach(doms, k, d) {
            const char *x = json_string_value(json_object_get(d, "job"));
            if (x && !strcmp(x, jid))
                st = json_string_value(json_object_get(d, "state"));
        }
        const struct jobsched_job *j = jobsched_get(c->js, ids[i]);
        if (st && !strcmp(st, "running")) {
            job_transition(c, ids[i], JOBSCHED_RUNNING, "found running after a controller restart");
            if (j && !j->node[0])
                job_place(c, ids[i], n->name, jobsched_job_max_mhz(j));
        } else if (!st && j && !j->node[0]) {
            /* Not here; placed again only once no node has it. */
            int elsewhere = 0;
            for (size_t q = 0; q < c->nnodes; q++) {
                json_t *u2 = c->nodes[q].report ? json_object_get(c->nodes[q].report, "usage")
                                                : NULL;
                json_t *d2;
                size_t r;
                json_array_foreach(u2 ? json_object_get(u2, "domains") : NULL, r, d2) {
                    const char *x = json_string_value(json_object_get(d2, "job"));
                    elsewhere |= x && !strcmp(x, jid);
                }
            }
            if (!elsewhere) {
                job_transition(c, ids[i], JOBSCHED_ELIGIBLE,
                               "its start was lost in a controller restart; placed again");
            }
        } else if (!st) {
            job_transition(c, ids[i], JOBSCHED_ELIGIBLE,
                           "its start was lost in a controller restart; placed again");
            job_place(c, ids[i], NULL, 0);
        }
    }
    free(ids);
}

void ctl_cycle_heartbeat(struct controller *c, struct ctl_node *n, double now, double dt)
{
    json_t *usage = n->report ? json_object_get(n->report, "usage") : NULL;
    json_t *doms = usage ? json_object_get(usage, "domains") : NULL;
    reconcile_after_restart(c, n, doms, usage ? json_object_get(usage, "processes") : NULL, now);
    size_t i;
    json_t *d;
    json_array_foreach(doms, i, d) {
        const char *jid = json_string_value(json_object_get(d, "job"));
        const char *st = json_string_value(json_object_get(d, "state"));
        if (!jid || jid[0] != 'j' || !st)
            continue;
        int64_t id = strtoll(jid + 1, NULL, 10);
        const struct jobsched_job *j = jobsched_get(c->js, id);
        if (!j || jobsched_state_terminal(j->state) || strcmp(j->node, n->name))
            continue;
        if (!strcmp(st, "finished") || !strcmp(st, "failed")) {
            json_t *es = json_object_get(d, "exit_status");
            char why[96];
            snprintf(why, sizeof(why), "exited with status %lld on %s",
                     es ? (long long)json_integer_value(es) : -1LL, n->name);
            job_finished(c, j, !strcmp(st, "finished"), why);
        } else if (!c->cfg.simulate_jobs && j->state == JOBSCHED_RUNNING) {
            double mhz = json_number_value(json_object_get(d, "cpu_mhz"));
            jobsched_report_usage(c->js, id, j->done_mcycles + mhz * dt, j->threads,
                                  j->threads > 0 ? mhz / j->threads : mhz, now, NULL);
        }
    }
    /* CPU used by each application's instances, integrated for the web
     * profiler; an instance that died is dropped, so the next placement
     * replaces it and the router stops sending it requests. */
    json_t *procs = usage ? json_object_get(usage, "processes") : NULL;
    json_array_foreach(procs, i, d) {
        const char *iid = json_string_value(json_object_get(d, "instance"));
        struct ctl_instance *in = iid ? inst_by_id(c, iid) : NULL;
        if (!in)
            continue;
        const char *st = json_string_value(json_object_get(d, "state"));
        if (in->unconfirmed && st && !strcmp(st, "running")) {
            in->unconfirmed = 0;
            wlm_info(CTL_COMP, "app instance found after restart", "instance=%s node=%s",
                     in->id, n->name);
            ctl_router_push(c, 0);
        }
        if (in->state == CTL_INST_RUNNING && st &&
            (!strcmp(st, "shutoff") || !strcmp(st, "crashed"))) {
            wlm_warn(CTL_COMP, "app instance died", "instance=%s node=%s port=%d", in->id,
                     n->name, in->port);
            inst_remove(c, in);
            count_instances(c);
            ctl_router_push(c, 0);
            continue;
        }
        double mhz = json_number_value(json_object_get(d, "cpu_mhz"));
        json_t *cur = json_object_get(c->app_cpu_mcycles, in->app);
        double prev = cur ? json_number_value(cur) : 0;
        json_object_set_new(c->app_cpu_mcycles, in->app, json_real(prev + mhz * dt));
    }
}

/* A node stopped heartbeating. Its app instances are dropped (the router
 * stops using them, the next placement starts replacements elsewhere); its
 * jobs become SUSPENDED with the reason recorded, so the next placement
 * restores them elsewhere from their last save file, or starts them again
 * when they never had one. */
void ctl_cycle_node_lost(struct controller *c, struct ctl_node *n)
{
    /* Nothing will come back from its agent. */
    int failed = 0;
    for (size_t i = 0; i < c->nplan; i++)
        if (c->plan[i].st == CTL_ACT_SENT && (!strcmp(c->plan[i].node, n->name) ||
                                              !strcmp(c->plan[i].dest_node, n->name))) {
            action_failed(c, &c->plan[i], "the node was lost");
            failed = 1;
        }
    if (failed)
        dispatch(c);
    int changed = 0;
    for (size_t i = 0; i < c->ninsts;) {
        if (!strcmp(c->insts[i].node, n->name)) {
            wlm_warn(CTL_COMP, "replacing the app instance of a lost node", "instance=%s node=%s",
                     c->insts[i].id, n->name);
            inst_remove(c, &c->insts[i]);
            changed = 1;
        } else {
            i++;
        }
    }
    if (changed) {
        count_instances(c);
        ctl_router_push(c, 0);
    }
    size_t nj;
    struct jobsched_job *const *jobs = jobsched_jobs(c->js, &nj);
    int64_t *ids = calloc(nj ? nj : 1, sizeof(*ids));
    size_t nids = 0;
    for (size_t i = 0; ids && i < nj; i++)
        if (!jobsched_state_terminal(jobs[i]->state) && !strcmp(jobs[i]->node, n->name))
            ids[nids++] = jobs[i]->id;
    for (size_t i = 0; i < nids; i++) {
        char why[200];
        snprintf(why, sizeof(why), "node %s lost: %s", n->name,
                 job_has_save(c, ids[i]) ? "will be restored elsewhere from its last save file"
                                         : "no save file, will be restarted elsewhere");
        const struct jobsched_job *j = jobsched_get(c->js, ids[i]);
        if (j && j->state == JOBSCHED_STARTING)
            job_transition(c, ids[i], JOBSCHED_ELIGIBLE, why);
        else if (j && j->state != JOBSCHED_SUSPENDED)
            job_transition(c, ids[i], JOBSCHED_SUSPENDED, why);
        job_place(c, ids[i], NULL, 0);
        wlm_warn(CTL_COMP, "job of a lost node", "job=%lld detail=\"%s\"", (long long)ids[i],
                 why);
    }
    free(ids);
}

/* ------------------------------------------------------------ views */

static json_t *placement_view(struct controller *c)
{
    json_t *nodes = json_array();
    size_t njobs;
    struct jobsched_job *const *jobs = jobsched_jobs(c->js, &njobs);
    for (size_t i = 0; i < c->nnodes; i++) {
        const struct ctl_node *n = &c->nodes[i];
        json_t *insts = json_array();
        for (size_t k = 0; k < c->ninsts; k++) {
            const struct ctl_instance *in = &c->insts[k];
            if (strcmp(in->node, n->name))
                continue;
            const struct ctl_app *app = ctl_app_find(c, in->app);
            json_array_append_new(
                insts, json_pack("{s:s, s:s, s:s, s:s, s:f, s:f, s:i}", "name", in->id, "kind",
                                 "app", "app", in->app, "state",
                                 in->state == CTL_INST_RUNNING    ? "RUNNING"
                                 : in->state == CTL_INST_STARTING ? "STARTING"
                                                                  : "STOPPING",
                                 "cpu_mhz", in->cpu_mhz, "memory_mb",
                                 app ? app->memory_mb : 0.0, "port", in->port));
        }
        for (size_t k = 0; k < njobs; k++) {
            const struct jobsched_job *j = jobs[k];
            if (jobsched_state_terminal(j->state) || strcmp(j->node, n->name))
                continue;
            char name[96];
            snprintf(name, sizeof(name), "job-%lld%s%s", (long long)j->id, j->name ? " " : "",
                     j->name ? j->name : "");
            json_array_append_new(
                insts, json_pack("{s:s, s:s, s:I, s:s, s:f, s:I}", "name", name, "kind", "job",
                                 "job", (json_int_t)j->id, "state", jobsched_state_name(j->state),
                                 "cpu_mhz", j->state == JOBSCHED_PAUSED ? 0.0 : j->alloc_mhz,
                                 "memory_mb", (json_int_t)j->memory_mb));
        }
        json_array_append_new(
            nodes, json_pack("{s:s, s:s, s:s, s:f, s:I, s:o}", "name", n->name, "state",
                             controller_node_state_name(n->state), "power",
                             node_powered_on(n) ? "on" : "off", "cpu_mhz",
                             (double)n->cores * n->mhz, "memory_mb", (json_int_t)n->memory_mb,
                             "instances", insts));
    }
    json_t *o = c->last_decision ? json_deep_copy(c->last_decision) : json_object();
    json_object_set_new(o, "nodes", nodes);
    json_t *plan = json_array();
    for (size_t i = 0; i < c->nplan; i++) {
        const struct ctl_action *a = &c->plan[i];
        static const char *sts[] = {"waiting", "sent", "done", "failed"};
        json_t *x = json_pack("{s:s, s:s, s:s, s:s}", "id", a->id, "kind", agent_kind(a), "node",
                              a->node, "status", sts[a->st]);
        if (a->error[0])
            json_object_set_new(x, "error", json_string(a->error));
        json_array_append_new(plan, x);
    }
    json_object_set_new(o, "plan", plan);
    return o;
}

/* The problem the placement controller would solve now, as a snapshot for
 * `wlm plan --snapshot` (docs/snapshot.md): what-if analysis on live state. */
static json_t *snapshot_json(const struct solve_work *sw)
{
    char comment[96], ts[40];
    snprintf(comment, sizeof(comment), "taken from wlm-controller at %s",
             wlm_time_format(wlm_now_wall(), ts, sizeof(ts)));
    return placement_problem_to_json(sw->p, comment);
}

static void handle_snapshot(struct wlm_http_req *req, void *ud)
{
    struct controller *c = ud;
    char *of = wlm_http_req_query(req, "of");
    int last = of && !strcmp(of, "last");
    if (of && !last) {
        wlm_http_respond_error(req, 400, "bad_request",
                               "of: expected \"last\" (the problem of the last decision) or nothing "
                               "(the problem as it stands now)");
        free(of);
        return;
    }
    free(of);
    if (last) {
        if (!c->last_problem)
            wlm_http_respond_error(req, 404, "not_found", "no placement decision yet");
        else
            wlm_http_respond_json(req, 200, json_incref(c->last_problem));
        return;
    }
    struct solve_work *sw = build_problem(c, wlm_now_wall());
    if (!sw) {
        wlm_http_respond_error(req, 409, "conflict", "no READY node: nothing to place");
        return;
    }
    json_t *o = snapshot_json(sw);
    solve_work_free(sw);
    wlm_http_respond_json(req, 200, o);
}

static void handle_placement(struct wlm_http_req *req, void *ud)
{
    wlm_http_respond_json(req, 200, placement_view(ud));
}

static void handle_summary(struct wlm_http_req *req, void *ud)
{
    struct controller *c = ud;
    size_t n, st[JOBSCHED_NSTATES] = {0};
    struct jobsched_job *const *jobs = jobsched_jobs(c->js, &n);
    for (size_t i = 0; i < n; i++)
        st[jobs[i]->state]++;
    size_t on = 0, ready = 0;
    for (size_t i = 0; i < c->nnodes; i++) {
        ready += c->nodes[i].state == CONTROLLER_NODE_READY;
        on += c->nodes[i].state == CONTROLLER_NODE_READY && node_powered_on(&c->nodes[i]);
    }
    json_t *o = json_pack(
        "{s:{s:I,s:I,s:I,s:I,s:I}, s:{s:I,s:I,s:I}, s:I, s:I}", "jobs", "completed",
        (json_int_t)st[JOBSCHED_COMPLETED], "running",
        (json_int_t)(st[JOBSCHED_RUNNING] + st[JOBSCHED_STARTING] + st[JOBSCHED_MIGRATING]),
        "queued",
        (json_int_t)(st[JOBSCHED_PENDING] + st[JOBSCHED_ELIGIBLE] + st[JOBSCHED_PAUSED] +
                     st[JOBSCHED_SUSPENDED]),
        "failed", (json_int_t)(st[JOBSCHED_FAILED] + st[JOBSCHED_CANCELLED]), "suspended",
        (json_int_t)st[JOBSCHED_SUSPENDED], "nodes", "on", (json_int_t)on, "ready",
        (json_int_t)ready, "registered", (json_int_t)c->nnodes, "instances",
        (json_int_t)c->ninsts, "plan_actions", (json_int_t)c->nplan);
    if (c->hist_len) {
        const struct ctl_util_point *p =
            &c->history[(c->hist_head + CTL_HISTORY - 1) % CTL_HISTORY];
        json_object_set_new(o, "min_utility", json_real(p->min));
        json_object_set_new(o, "min_workload", json_string(p->min_name));
    }
    wlm_http_respond_json(req, 200, o);
}

void ctl_cycle_routes(struct controller *c)
{
    wlm_http_server_route(c->http, "POST", "/v1/actions/:id/complete", 1, handle_complete, c);
    wlm_http_server_route(c->http, "GET", "/v1/placement", 1, handle_placement, c);
    wlm_http_server_route(c->http, "GET", "/v1/placement/snapshot", 1, handle_snapshot, c);
    wlm_http_server_route(c->http, "GET", "/v1/summary", 1, handle_summary, c);
    ctl_flows_routes(c);
}

/* ------------------------------------------------------------ timers */

static void on_flow_timer(uv_timer_t *t)
{
    struct controller *c = t->data;
    double now = wlm_now_wall();
    if (c->cfg.simulate_jobs) {
        double dt = c->last_progress > 0 ? now - c->last_progress : 0;
        simulate_progress(c, now, dt);
    }
    c->last_progress = now;
    check_timeouts(c);
    cleanup_ended(c);
    ctl_flows_tick(c, now);
}

static void on_place_timer(uv_timer_t *t)
{
    place_tick(t->data);
}

int ctl_cycle_init(struct controller *c, struct wlm_error *err)
{
    c->fc = flowctl_new(NULL, err);
    /* Instances run only their application, so their CPU is all requests:
     * no idle baseline to estimate (with steady load it would be
     * indistinguishable from the per-request cost). */
    struct prof_web_config pc;
    prof_web_config_default(&pc);
    pc.baseline = 0;
    c->prof = prof_web_new(&pc, err);
    c->client = wlm_http_client_new(c->loop);
    c->app_cpu_mcycles = json_object();
    c->saved_jobs = json_object();
    c->next_port = (int)c->cfg.app_port_base;
    if (!c->fc || !c->prof || !c->client || !c->app_cpu_mcycles)
        return err && err->code ? err->code : wlm_error_set(err, WLM_EINTERNAL, "out of memory");
    return 0;
}

void ctl_cycle_start(struct controller *c)
{
    uv_timer_init(c->loop, &c->flow_timer);
    uv_timer_init(c->loop, &c->place_timer);
    c->flow_timer.data = c->place_timer.data = c;
    uv_timer_start(&c->flow_timer, on_flow_timer, (uint64_t)c->cfg.flow_period_ms,
                   (uint64_t)c->cfg.flow_period_ms);
    /* The first decision comes soon after start, once heartbeats are in. */
    uint64_t first = (uint64_t)c->cfg.placement_period_ms < 3000
                         ? (uint64_t)c->cfg.placement_period_ms : 3000;
    uv_timer_start(&c->place_timer, on_place_timer, first, (uint64_t)c->cfg.placement_period_ms);
}

static void on_cycle_timer_closed(uv_handle_t *h)
{
    struct controller *c = h->data;
    if (--c->pending_closes == 0 && c->stop_done)
        c->stop_done(c->stop_ud);
}

void ctl_cycle_stop(struct controller *c)
{
    c->pending_closes += 2;
    uv_timer_stop(&c->flow_timer);
    uv_timer_stop(&c->place_timer);
    uv_close((uv_handle_t *)&c->flow_timer, on_cycle_timer_closed);
    uv_close((uv_handle_t *)&c->place_timer, on_cycle_timer_closed);
}

void ctl_cycle_free(struct controller *c)
{
    ctl_flows_free(c);
    flowctl_free(c->fc);
    prof_web_free(c->prof);
    wlm_http_client_free(c->client);
    json_decref(c->app_cpu_mcycles);
    json_decref(c->saved_jobs);
    json_decref(c->last_decision);
    json_decref(c->last_problem);
    free(c->insts);
    free(c->plan);
}
