/*
 * cycle.h - private to the controller's placement cycle: what its files
 * (problem.c, executor.c, reconcile.c, views.c, instances.c, cycle.c) share.
 */
#ifndef WLM_CONTROLLER_CYCLE_H
#define WLM_CONTROLLER_CYCLE_H

#include "internal.h"

#define CTL_COMP "controller"

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
    struct ctl_power_plan *power; /* power.c: budgets from the plan without them */
};

/* instances.c: node helpers and the app instance table. */
int ctl_node_powered_on(const struct ctl_node *n);
void ctl_node_host(const struct ctl_node *n, char *out, size_t size);
struct ctl_instance *ctl_inst_find(struct controller *c, const char *app, const char *node);
struct ctl_instance *ctl_inst_by_id(struct controller *c, const char *id);
void ctl_inst_remove(struct controller *c, struct ctl_instance *in);
void ctl_instances_save(struct controller *c);
void ctl_count_instances(struct controller *c);
/* problem.c: the problem of a decision, solved on the thread pool. */
void ctl_solve_run(uv_work_t *w);
struct solve_work *ctl_build_problem(struct controller *c, double now);
void ctl_solve_work_free(struct solve_work *sw);
json_t *ctl_snapshot_json(const struct solve_work *sw);
/* VM slots the node's agent has free (its image pool's max less the job VMs
 * it holds), or -1 when it reports no limit. */
long ctl_node_free_slots(struct controller *c, const struct ctl_node *n);
/* executor.c: actions sent to the agents and their outcomes. */
int ctl_job_has_save(const struct controller *c, int64_t id);
const char *ctl_agent_kind(const struct ctl_action *a);
void ctl_job_transition(struct controller *c, int64_t id, enum jobsched_state to,
                        const char *reason);
void ctl_job_place(struct controller *c, int64_t id, const char *node, double mhz);
void ctl_action_failed(struct controller *c, struct ctl_action *a, const char *why);
/* The state changes of an action its agent confirmed (settle.c uses it for
 * actions from before a restart). */
void ctl_action_apply(struct controller *c, struct ctl_action *a, const json_t *result);
void ctl_dispatch(struct controller *c);
/* Free the plan (each action's dependencies and the array); no plan after. */
void ctl_plan_free(struct controller *c);
void ctl_handle_complete(struct wlm_http_req *req, void *ud);
void ctl_place_tick(struct controller *c);
void ctl_check_timeouts(struct controller *c);
/* A job whose start failed for lack of capacity waits before it is placed
 * again (exponential backoff, the reason in its history). */
int ctl_job_backing_off(struct controller *c, int64_t id, double now);
/* Does the node's agent refuse this action kind ("unsupported")? */
int ctl_node_unsupported(const struct controller *c, const char *node, const char *kind);
/* The node's agent runs the libvirt test driver: nothing runs in its VMs. */
int ctl_node_is_test(const struct ctl_node *n);
/* reconcile.c: job progress and what the agents report. */
void ctl_cleanup_ended(struct controller *c);
void ctl_simulate_progress(struct controller *c, double now, double dt);

/* pool.c: warm-pool hints for the agents. */
void ctl_pool_hints(struct controller *c);

#endif
