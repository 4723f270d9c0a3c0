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
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cycle.h"
#include "ha.h"

/* ------------------------------------------------------------ timers */

static void on_flow_timer(uv_timer_t *t)
{
    struct controller *c = t->data;
    double now = wlm_now_wall();
    if (!ctl_ha_may_act())
        return; /* a deposed leader decides nothing (and is being replaced) */
    if (c->cfg.simulate_jobs) {
        double dt = c->last_progress > 0 ? now - c->last_progress : 0;
        ctl_simulate_progress(c, now, dt);
    }
    c->last_progress = now;
    ctl_check_timeouts(c);
    ctl_cleanup_ended(c);
    ctl_apps_reap(c);
    ctl_flows_tick(c, now);
}

static void on_place_timer(uv_timer_t *t)
{
    if (!ctl_ha_may_act())
        return;
    ctl_place_tick(t->data);
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
    c->app_cpu_meas = json_object();
    c->app_cpu_prev = json_object();
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
    uint64_t first =
        (uint64_t)c->cfg.placement_period_ms < 3000 ? (uint64_t)c->cfg.placement_period_ms : 3000;
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
    json_decref(c->app_cpu_meas);
    json_decref(c->app_cpu_prev);
    json_decref(c->saved_jobs);
    json_decref(c->last_decision);
    json_decref(c->last_problem);
    json_decref(c->pool_hints);
    json_decref(c->job_backoff);
    json_decref(c->unsupported);
    free(c->insts);
    ctl_plan_free(c);
}
