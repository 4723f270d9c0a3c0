/* views.c - the placement as the API shows it: /v1/placement,
 * /v1/placement/snapshot, /v1/summary. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cycle.h"

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
            json_array_append_new(insts, json_pack("{s:s, s:s, s:s, s:s, s:f, s:f, s:i}", "name",
                                                   in->id, "kind", "app", "app", in->app, "state",
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
            json_array_append_new(insts, json_pack("{s:s, s:s, s:I, s:s, s:f, s:I}", "name", name,
                                                   "kind", "job", "job", (json_int_t)j->id, "state",
                                                   jobsched_state_name(j->state), "cpu_mhz",
                                                   j->state == JOBSCHED_PAUSED ? 0.0 : j->alloc_mhz,
                                                   "memory_mb", (json_int_t)j->memory_mb));
        }
        json_array_append_new(nodes, json_pack("{s:s, s:s, s:s, s:f, s:I, s:o}", "name", n->name,
                                               "state", controller_node_state_name(n->state),
                                               "power", ctl_node_powered_on(n) ? "on" : "off",
                                               "cpu_mhz", (double)n->cores * n->mhz, "memory_mb",
                                               (json_int_t)n->memory_mb, "instances", insts));
    }
    json_t *o = c->last_decision ? json_deep_copy(c->last_decision) : json_object();
    json_object_set_new(o, "nodes", nodes);
    json_t *plan = json_array();
    for (size_t i = 0; i < c->nplan; i++) {
        const struct ctl_action *a = &c->plan[i];
        static const char *sts[] = {"waiting", "sent", "done", "failed"};
        json_t *x = json_pack("{s:s, s:s, s:s, s:s}", "id", a->id, "kind", ctl_agent_kind(a),
                              "node", a->node, "status", sts[a->st]);
        if (a->error[0])
            json_object_set_new(x, "error", json_string(a->error));
        json_array_append_new(plan, x);
    }
    json_object_set_new(o, "plan", plan);
    return o;
}

/* The problem the placement controller would solve now, as a snapshot for
 * `wlm plan --snapshot` (docs/snapshot.md): what-if analysis on live state. */

static void handle_snapshot(struct wlm_http_req *req, void *ud)
{
    struct controller *c = ud;
    char *of = wlm_http_req_query(req, "of");
    int last = of && !strcmp(of, "last");
    if (of && !last) {
        wlm_http_respond_error(
            req, 400, "bad_request",
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
    struct solve_work *sw = ctl_build_problem(c, wlm_now_wall());
    if (!sw) {
        wlm_http_respond_error(req, 409, "conflict", "no READY node: nothing to place");
        return;
    }
    json_t *o = ctl_snapshot_json(sw);
    ctl_solve_work_free(sw);
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
        on += c->nodes[i].state == CONTROLLER_NODE_READY && ctl_node_powered_on(&c->nodes[i]);
    }
    json_t *o = json_pack(
        "{s:{s:I,s:I,s:I,s:I,s:I}, s:{s:I,s:I,s:I}, s:I, s:I}", "jobs", "completed",
        (json_int_t)st[JOBSCHED_COMPLETED], "running",
        (json_int_t)(st[JOBSCHED_RUNNING] + st[JOBSCHED_STARTING] + st[JOBSCHED_MIGRATING]),
        "queued",
        (json_int_t)(st[JOBSCHED_PENDING] + st[JOBSCHED_ELIGIBLE] + st[JOBSCHED_PAUSED] +
                     st[JOBSCHED_SUSPENDED]),
        "failed", (json_int_t)st[JOBSCHED_FAILED], "suspended",
        (json_int_t)st[JOBSCHED_SUSPENDED], "nodes", "on", (json_int_t)on, "ready",
        (json_int_t)ready, "registered", (json_int_t)c->nnodes, "instances", (json_int_t)c->ninsts,
        "plan_actions", (json_int_t)c->nplan);
    json_object_set_new(json_object_get(o, "jobs"), "cancelled",
                        json_integer((json_int_t)st[JOBSCHED_CANCELLED]));
    if (c->jobs_without_slot)
        json_object_set_new(json_object_get(o, "jobs"), "waiting_for_vm_slot",
                            json_integer((json_int_t)c->jobs_without_slot));
    /* What makes the utility lie: a router that cannot be configured, apps
     * that crash-loop or cannot be placed. */
    json_t *problems = json_array();
    if (c->cfg.router_url[0]) {
        json_t *r = json_pack("{s:s, s:b}", "url", c->cfg.router_url, "ok", !c->router_error[0]);
        if (c->router_error[0]) {
            json_object_set_new(r, "error", json_string(c->router_error));
            json_object_set_new(r, "since", json_real(c->router_error_since));
            json_array_append_new(problems, json_string(c->router_error));
        }
        json_object_set_new(o, "router", r);
    }
    json_t *apps = json_array();
    for (size_t i = 0; i < c->napps; i++) {
        const struct ctl_app *a = &c->apps[i];
        char why[256];
        ctl_app_reason(c, a, why, sizeof(why));
        const char *state = a->deleting                        ? "deleting"
                            : ctl_app_crash_looping(a)         ? "crash-looping"
                            : a->ninstances                    ? "running"
                                                               : "waiting";
        json_t *x = json_pack("{s:s, s:s, s:I}", "name", a->name, "state", state, "instances",
                              (json_int_t)a->ninstances);
        if (why[0]) {
            json_object_set_new(x, "reason", json_string(why));
            if (!a->deleting) {
                char line[400];
                snprintf(line, sizeof(line), "app %s: %s", a->name, why);
                json_array_append_new(problems, json_string(line));
            }
        }
        json_array_append_new(apps, x);
    }
    json_object_set_new(o, "apps", apps);
    json_object_set_new(o, "problems", problems);
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
    wlm_http_server_route(c->http, "POST", "/v1/actions/:id/complete", 1, ctl_handle_complete, c);
    wlm_http_server_route(c->http, "GET", "/v1/placement", 1, handle_placement, c);
    wlm_http_server_route(c->http, "GET", "/v1/placement/snapshot", 1, handle_snapshot, c);
    wlm_http_server_route(c->http, "GET", "/v1/summary", 1, handle_summary, c);
    ctl_flows_routes(c);
}
