/*
 * power.h - private to the controller: energy accounting (energy.c) and power
 * budgets (power.c). The agents measure power and attribute energy to each
 * domain and process in every heartbeat; the controller turns their running
 * totals into energy per job, app instance and app (kept in its store), a
 * short power history per node, and splits the cluster's power budget among
 * the nodes.
 */
#ifndef WLM_CONTROLLER_POWER_H
#define WLM_CONTROLLER_POWER_H

#include "internal.h"
#include "power_split.h"

#define CTL_POWER_HIST 360  /* power samples kept per node */
#define CTL_POWER_WINDOW 16 /* placement periods remembered for violations */

/* Energy of one workload: kind "job" (name = job id), "instance" or "app". */
struct ctl_energy_wl {
    char kind[12];
    char name[100];
    char app[64]; /* instances: their app */
    char node[64]; /* where it last used energy */
    double joules;
    double active_s; /* seconds seen running */
    double first_t, last_t;
    int dirty;
    struct wlm_counter *counter; /* its wlm_workload_energy_joules_total, once looked up */
};

/* The last running total an agent reported for one key ("node", "vm:ID",
 * "proc:ID"); a smaller one means the agent started counting again. */
struct ctl_energy_src {
    char node[64];
    char key[140];
    double cum_j;
    int dirty;
};

struct ctl_power_node {
    char name[64];
    double override_w;   /* operator's budget for this node; < 0 = none */
    double idle_w, max_w; /* the agent's power model (0 = not reported yet) */
    double watts;
    char source[12];
    double energy_j;     /* integrated by the controller from the agent's totals */
    double attributed_j; /* of which attributed to workloads */
    double unattributed_j; /* the agent kept for the node (nothing used CPU) */
    double budget_w;     /* in force (override or share of the cluster budget); 0 = none */
    double planned_mhz;  /* CPU planned on it when the budget was split */
    double plan_budget_w, plan_t; /* its share by the last decision's plan (ctl_power_adopt) */
    /* history */
    double ht[CTL_POWER_HIST], hw[CTL_POWER_HIST], hb[CTL_POWER_HIST];
    size_t hhead, hlen;
    double last_persist;
    double saved_energy_j, saved_watts, saved_budget_w; /* as last written */
    /* violations, one slot per placement period */
    unsigned char viol[CTL_POWER_WINDOW];
    size_t vlen;
    long long period;        /* placement period index of the slot being filled */
    int viol_now;            /* the current period saw a violation */
    double overshoot_w;      /* largest watts - budget in the current window */
    int flagged;
    unsigned long long violations; /* agent's count, last report */
    json_t *agent;           /* the agent's "power.budget" report, owned */
    struct wlm_gauge *g_watts, *g_budget; /* its metrics, once looked up */
};

struct ctl_energy {
    struct ctl_energy_wl *wl;
    size_t nwl, capwl;
    struct ctl_energy_src *src;
    size_t nsrc, capsrc;
    struct ctl_power_node *pn;
    size_t npn;
    json_t *wl_idx, *src_idx, *pn_idx; /* key -> index in wl, src, pn (hash lookups) */
    size_t *dwl, ndwl, capdwl;    /* indices of wl rows changed since written */
    size_t *dsrc, ndsrc, capdsrc; /* the same for src */
    double last_flush;            /* etcd: the last batched write */
    double cluster_budget_w; /* 0 = none */
    char split_note[256];    /* why the split could not give what was asked */
    int loaded_counters;
};

/* energy.c */
int ctl_energy_init(struct controller *c, struct wlm_error *err);
void ctl_energy_free(struct controller *c);
void ctl_energy_routes(struct controller *c);
/* A heartbeat was stored in n->report; dt seconds since the previous one. */
void ctl_energy_heartbeat(struct controller *c, struct ctl_node *n, double now, double dt);
struct ctl_power_node *ctl_power_node(struct controller *c, const char *name, int create);
/* etcd: write what changed, once a minute (called from the sweep). */
void ctl_energy_flush(struct controller *c, double now);
/* Write a node's power row (override, energy totals) to the store. */
int ctl_power_node_store(struct controller *c, const struct ctl_power_node *p,
                         struct wlm_error *err);
/* Fields added to a node's JSON: power now, budget, flag. */
void ctl_power_node_fields(struct controller *c, const struct ctl_node *n, json_t *o);

/* power.c */
/* Split the cluster budget among the READY nodes (overrides first,
 * the rest by planned CPU share within each node's maximum). */
void ctl_power_split(struct controller *c);
/* What the heartbeat answer carries for the agent: its budget and the order
 * in which to throttle its workloads (cheapest in utility first). */
void ctl_power_heartbeat_reply(struct controller *c, const struct ctl_node *n, json_t *reply);
/* The placement's view of a node's power: model and the budget it must keep
 * (lowered for a node flagged for repeated violations). */
void ctl_power_placement_node(struct controller *c, const struct ctl_node *n, double *idle_w,
                              double *max_w, double *budget_w);
void ctl_power_routes(struct controller *c);
/* A violation report from a heartbeat, counted per placement period. */
void ctl_power_violation(struct controller *c, struct ctl_power_node *p, int violating,
                         double now);
/* On the solver's thread, after a solve: when budgets cut a node's CPU and
 * some goal is missed, solve again without budgets; if that meets more,
 * say so in the decision's note ("power budget: ..."). */
struct solve_work;
void ctl_power_budget_check(struct solve_work *sw);
/* With a cluster budget the split follows the plan made without budgets:
 * prepare (main thread, after the problem is built) records overrides and
 * flags; run (solver thread, before the solve) solves without budgets
 * (heuristic), splits the budget by that plan's CPU per node and sets the
 * nodes' budgets; adopt (main thread, when the work is freed) keeps the
 * split for the agents. */
void ctl_power_prepare(struct controller *c, struct solve_work *sw);
void ctl_power_plan_run(struct solve_work *sw);
void ctl_power_adopt(struct solve_work *sw);
double ctl_power_default_idle(void);
double ctl_power_default_max(void);

#endif
