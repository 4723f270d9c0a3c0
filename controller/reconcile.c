/* reconcile.c - what the agents report: heartbeats, job progress and
 * completion, reconciliation after a controller restart, lost nodes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cycle.h"
#include "settle.h"

/* ------------------------------------------------------------ job progress */

static void job_finished(struct controller *c, const struct jobsched_job *j, int ok,
                         const char *why)
{
    int64_t id = j->id;
    char node[64];
    wlm_strlcpy(node, j->node, sizeof(node));
    /* The domain is removed (and its image returned to the pool) by
     * ctl_cleanup_ended on the next tick, as for a cancelled job. */
    ctl_job_transition(c, id, ok ? JOBSCHED_COMPLETED : JOBSCHED_FAILED, why);
    wlm_info(CTL_COMP, ok ? "job completed" : "job failed", "job=%lld node=%s detail=\"%s\"",
             (long long)id, node, why);
    ctl_events_broadcast(c, "jobs", json_pack("{s:I}", "job", (json_int_t)id));
}

/* A cancelled (or failed) job may still have a domain on its node: remove
 * it and forget the placement. */
void ctl_cleanup_ended(struct controller *c)
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
            wlm_http_client_request(c->client, "POST", url, ctl_agent_token(c), "application/json",
                                    text, strlen(text), 10000, NULL, NULL);
            free(text);
            free(url);
        }
        wlm_info(CTL_COMP, "removing the domain of an ended job", "job=%lld node=%s state=%s",
                 (long long)j->id, j->node, jobsched_state_name(j->state));
        ctl_job_place(c, j->id, NULL, 0);
        jobs = jobsched_jobs(c->js, &n); /* the table may have been rebuilt */
    }
}

/* With simulate_jobs, running jobs advance by their allocation (the test
 * driver runs nothing inside its domains). */
void ctl_simulate_progress(struct controller *c, double now, double dt)
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
        json_array_foreach(procs, k, p)
        {
            const char *iid = json_string_value(json_object_get(p, "instance"));
            if (iid && !strcmp(iid, in->id))
                seen = 1;
        }
        if (in->unconfirmed && !strcmp(in->node, n->name) && !seen) {
            wlm_warn(CTL_COMP, "recorded app instance is gone", "instance=%s node=%s", in->id,
                     n->name);
            ctl_inst_remove(c, in);
            ctl_count_instances(c);
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
     * every node's report settles it - unless its agent is asked for the
     * start's outcome (settle.c): a start still under way there shows no
     * running domain yet, and is not lost. */
    for (size_t i = 0; ids && i < nj; i++)
        if (jobs[i]->state == JOBSCHED_STARTING && !c->nplan &&
            !ctl_settle_job_pending(c, jobs[i]->id) &&
            (!strcmp(jobs[i]->node, n->name) || !jobs[i]->node[0]))
            ids[nids++] = jobs[i]->id;
    for (size_t i = 0; i < nids; i++) {
        char jid[32];
        snprintf(jid, sizeof(jid), "j%lld", (long long)ids[i]);
        const char *st = NULL;
        size_t k;
        json_t *d;
        json_array_foreach(doms, k, d)
        {
            const char *x = json_string_value(json_object_get(d, "job"));
            if (x && !strcmp(x, jid))
                st = json_string_value(json_object_get(d, "state"));
        }
        const struct jobsched_job *j = jobsched_get(c->js, ids[i]);
        if (st && !strcmp(st, "running")) {
            ctl_job_transition(c, ids[i], JOBSCHED_RUNNING,
                               "found running after a controller restart");
            if (j && !j->node[0])
                ctl_job_place(c, ids[i], n->name, jobsched_job_max_mhz(j));
        } else if (!st && j && !j->node[0]) {
            /* Not here; placed again only once no node has it. */
            int elsewhere = 0;
            for (size_t q = 0; q < c->nnodes; q++) {
                json_t *u2 =
                    c->nodes[q].report ? json_object_get(c->nodes[q].report, "usage") : NULL;
                json_t *d2;
                size_t r;
                json_array_foreach(u2 ? json_object_get(u2, "domains") : NULL, r, d2)
                {
                    const char *x = json_string_value(json_object_get(d2, "job"));
                    elsewhere |= x && !strcmp(x, jid);
                }
            }
            if (!elsewhere) {
                ctl_job_transition(c, ids[i], JOBSCHED_ELIGIBLE,
                                   "its start was lost in a controller restart; placed again");
            }
        } else if (!st) {
            ctl_job_transition(c, ids[i], JOBSCHED_ELIGIBLE,
                               "its start was lost in a controller restart; placed again");
            ctl_job_place(c, ids[i], NULL, 0);
        }
    }
    free(ids);
}

void ctl_cycle_heartbeat(struct controller *c, struct ctl_node *n, double now, double dt)
{
    if (!n->said_driver && n->report && json_object_get(n->report, "driver")) {
        n->said_driver = 1;
        if (ctl_node_is_test(n) && !c->cfg.simulate_jobs)
            wlm_warn(CTL_COMP,
                     "node runs the libvirt test driver: nothing runs inside its VMs; "
                     "its agent simulates each job for the time its work takes at its allocation",
                     "node=%s", n->name);
    }
    json_t *usage = n->report ? json_object_get(n->report, "usage") : NULL;
    json_t *doms = usage ? json_object_get(usage, "domains") : NULL;
    ctl_settle_heartbeat(c, n);
    reconcile_after_restart(c, n, doms, usage ? json_object_get(usage, "processes") : NULL, now);
    size_t i;
    json_t *d;
    json_array_foreach(doms, i, d)
    {
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
            double done = j->done_mcycles + mhz * dt;
            /* The job's own word (WLM-PROGRESS lines) beats CPU time. */
            const char *src = json_string_value(json_object_get(d, "progress_source"));
            json_t *pg = json_object_get(d, "progress");
            if (src && (!strcmp(src, "guest") || !strcmp(src, "simulated")) && json_is_number(pg) &&
                j->work_mcycles > 0) {
                double f = json_number_value(pg);
                done = (f < 0 ? 0 : f > 1 ? 1 : f) * j->work_mcycles;
            }
            /* Work is an estimate: a job that runs longer stays at 100 %
             * until it ends, it does not count past it. */
            if (j->work_mcycles > 0 && done > j->work_mcycles)
                done = j->work_mcycles;
            jobsched_report_usage(c->js, id, done, j->threads,
                                  j->threads > 0 ? mhz / j->threads : mhz, now, NULL);
        }
    }
    /* CPU used by each application's instances, integrated for the web
     * profiler; an instance that died is dropped, so the next placement
     * replaces it and the router stops sending it requests. */
    json_t *procs = usage ? json_object_get(usage, "processes") : NULL;
    json_array_foreach(procs, i, d)
    {
        const char *iid = json_string_value(json_object_get(d, "instance"));
        struct ctl_instance *in = iid ? ctl_inst_by_id(c, iid) : NULL;
        if (!in)
            continue;
        const char *st = json_string_value(json_object_get(d, "state"));
        if (in->unconfirmed && st && !strcmp(st, "running")) {
            in->unconfirmed = 0;
            wlm_info(CTL_COMP, "app instance found after restart", "instance=%s node=%s", in->id,
                     n->name);
            ctl_router_push(c, 0);
        }
        if (in->state == CTL_INST_RUNNING && st &&
            (!strcmp(st, "shutoff") || !strcmp(st, "crashed"))) {
            wlm_warn(CTL_COMP, "app instance died", "instance=%s node=%s port=%d", in->id, n->name,
                     in->port);
            ctl_app_instance_exited(c, in->app, in->id, n->name, d);
            ctl_inst_remove(c, in);
            ctl_count_instances(c);
            ctl_router_push(c, 0);
            continue;
        }
        double mhz = json_number_value(json_object_get(d, "cpu_mhz"));
        double add = mhz * dt; /* inferred from the last interval's rate */
        json_t *cs = json_object_get(d, "cpu_seconds");
        if (json_is_number(cs)) {
            /* Measured by the agent, cumulative: the difference since this
             * instance's last report is exact, whatever the heartbeats'
             * timing; the CPU wait says how much slower than its allocation
             * the instance's CPU ran. */
            double cpu = json_number_value(cs);
            double wait = json_number_value(json_object_get(d, "cpu_wait_seconds"));
            add = 0;
            if (in->cpu_seen && cpu >= in->cpu_s_seen && wait >= in->wait_s_seen) {
                add = (cpu - in->cpu_s_seen) * (n->mhz > 0 ? n->mhz : 1000);
                json_t *m = json_object_get(c->app_cpu_meas, in->app);
                double mc = m ? json_number_value(json_array_get(m, 0)) : 0;
                double mw = m ? json_number_value(json_array_get(m, 1)) : 0;
                json_object_set_new(
                    c->app_cpu_meas, in->app,
                    json_pack("[f,f]", mc + cpu - in->cpu_s_seen, mw + wait - in->wait_s_seen));
            }
            in->cpu_s_seen = cpu;
            in->wait_s_seen = wait;
            in->cpu_seen = 1;
        }
        json_t *cur = json_object_get(c->app_cpu_mcycles, in->app);
        double prev = cur ? json_number_value(cur) : 0;
        json_object_set_new(c->app_cpu_mcycles, in->app, json_real(prev + add));
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
        if (c->plan[i].st == CTL_ACT_SENT &&
            (!strcmp(c->plan[i].node, n->name) || !strcmp(c->plan[i].dest_node, n->name))) {
            ctl_action_failed(c, &c->plan[i], "the node was lost");
            failed = 1;
        }
    if (failed)
        ctl_dispatch(c);
    int changed = 0;
    for (size_t i = 0; i < c->ninsts;) {
        if (!strcmp(c->insts[i].node, n->name)) {
            wlm_warn(CTL_COMP, "replacing the app instance of a lost node", "instance=%s node=%s",
                     c->insts[i].id, n->name);
            ctl_inst_remove(c, &c->insts[i]);
            changed = 1;
        } else {
            i++;
        }
    }
    if (changed) {
        ctl_count_instances(c);
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
                 ctl_job_has_save(c, ids[i]) ? "will be restored elsewhere from its last save file"
                                             : "no save file, will be restarted elsewhere");
        const struct jobsched_job *j = jobsched_get(c->js, ids[i]);
        if (j && j->state == JOBSCHED_STARTING)
            ctl_job_transition(c, ids[i], JOBSCHED_ELIGIBLE, why);
        else if (j && j->state != JOBSCHED_SUSPENDED)
            ctl_job_transition(c, ids[i], JOBSCHED_SUSPENDED, why);
        ctl_job_place(c, ids[i], NULL, 0);
        wlm_warn(CTL_COMP, "job of a lost node", "job=%lld detail=\"%s\"", (long long)ids[i], why);
    }
    free(ids);
}
