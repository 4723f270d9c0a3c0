/*
 * snapshot_out.c - a problem as a snapshot document (docs/snapshot.md), the
 * inverse of placement_snapshot_parse: every field the core reads is
 * written, so a snapshot taken from the controller replays in `wlm plan` to
 * the decision the controller took. Numbers are written by jansson with
 * round-trip precision.
 */
#include <string.h>

#include "placement.h"

static json_t *utility_json(const struct placement_utility *u)
{
    json_t *a = json_array();
    for (size_t i = 0; i < u->npoints; i++)
        json_array_append_new(a, json_pack("[f,f]", u->cpu_mhz[i], u->util[i]));
    return a;
}

static json_t *labels_json(const char *csv)
{
    json_t *a = json_array();
    const char *s = csv;
    while (*s) {
        const char *e = strchr(s, ',');
        size_t l = e ? (size_t)(e - s) : strlen(s);
        if (l)
            json_array_append_new(a, json_stringn(s, l));
        s += l + (e ? 1 : 0);
    }
    return a;
}

static json_t *options_json(const struct placement_options *op)
{
    json_t *costs = json_object();
    for (int k = 0; k < PLACEMENT_ACT__COUNT; k++)
        json_object_set_new(costs, placement_action_name(k),
                            json_pack("{s:f, s:f, s:f}", "duration_s", op->cost[k].duration_s,
                                      "cpu_mhz", op->cost[k].cpu_mhz, "utility",
                                      op->cost[k].utility));
    json_t *o = json_pack(
        "{s:s, s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:b, s:f, s:i, s:b}", "solver",
        placement_solver_name(op->solver), "exact_max_pairs", (json_int_t)op->exact_max_pairs,
        "time_limit_s", op->time_limit_s, "mip_gap", op->mip_gap, "hysteresis", op->hysteresis,
        "goal_utility", op->goal_utility, "headroom", op->headroom, "power_off_margin",
        op->power_off_margin, "power_saving", op->power_saving, "balance_band", op->balance_band,
        "max_balance_moves", op->max_balance_moves, "no_moves", op->no_moves);
    json_object_set_new(o, "costs", costs);
    json_object_set_new(o, "work_limit", json_integer(op->work_limit));
    return o;
}

json_t *placement_problem_to_json(const struct placement_problem *p, const char *comment)
{
    static const char *const states[] = {"queued", "running", "paused", "suspended"};
    json_t *nodes = json_array(), *apps = json_array(), *jobs = json_array();
    for (size_t i = 0; i < p->nnodes; i++) {
        const struct placement_node *n = &p->nodes[i];
        json_t *o = json_pack("{s:s, s:i, s:f, s:f, s:b, s:b, s:f, s:f, s:o}", "name", n->name,
                              "cores", n->cores, "mhz_per_core", n->mhz_per_core, "memory_mb",
                              n->memory_mb, "powered_on", n->powered_on, "can_power_off",
                              n->can_power_off, "power_idle_w", n->power_idle_w, "power_max_w",
                              n->power_max_w, "labels", labels_json(n->labels));
        if (n->power_budget_w > 0)
            json_object_set_new(o, "power_budget_w", json_real(n->power_budget_w));
        json_array_append_new(nodes, o);
    }
    for (size_t w = 0; w < p->nworkloads; w++) {
        const struct placement_workload *wl = &p->workloads[w];
        json_t *o = json_pack("{s:s, s:f, s:f, s:o, s:o}", "name", wl->name, "memory_mb",
                              wl->memory_mb, "max_cpu_mhz", wl->max_cpu_per_instance, "utility",
                              utility_json(&wl->utility), "requires", labels_json(wl->requires));
        if (wl->kind == PLACEMENT_APP) {
            json_t *insts = json_array();
            for (size_t k = 0; k < p->ncurrent; k++)
                if (p->current[k].workload == w)
                    json_array_append_new(insts, json_pack("{s:s, s:f}", "node",
                                                           p->nodes[p->current[k].node].name,
                                                           "cpu_mhz", p->current[k].cpu_mhz));
            json_object_set_new(o, "min_instances", json_integer(wl->min_instances));
            json_object_set_new(o, "max_instances", json_integer(wl->max_instances));
            json_object_set_new(o, "instances", insts);
            json_array_append_new(apps, o);
            continue;
        }
        json_object_set_new(o, "state", json_string(states[wl->state]));
        json_object_set_new(o, "migratable", json_boolean(wl->migratable));
        json_object_set_new(o, "whole", json_boolean(wl->whole));
        json_object_set_new(o, "stall_cost", json_real(wl->stall_cost));
        if (wl->busy)
            json_object_set_new(o, "busy", json_true());
        if (wl->cur_node >= 0 && (size_t)wl->cur_node < p->nnodes &&
            (wl->state == PLACEMENT_JOB_RUNNING || wl->state == PLACEMENT_JOB_PAUSED)) {
            json_object_set_new(o, "node", json_string(p->nodes[wl->cur_node].name));
            for (size_t k = 0; k < p->ncurrent; k++)
                if (p->current[k].workload == w)
                    json_object_set_new(o, "cpu_mhz", json_real(p->current[k].cpu_mhz));
        }
        json_array_append_new(jobs, o);
    }
    json_t *root = json_pack("{s:o, s:o, s:o, s:o}", "options", options_json(&p->opts), "nodes",
                             nodes, "apps", apps, "jobs", jobs);
    if (comment)
        json_object_set_new(root, "comment", json_string(comment));
    return root;
}
