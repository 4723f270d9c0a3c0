/* Agent restart recovery: app instances and actions of the previous run.
 *
 * Instances recorded in the agent's SQLite state are taken back when their
 * pid still runs with the recorded start time, marker and command; the
 * others are listed as shut off, so the controller replaces them.
 *
 * Actions still "running" in the state were cut off by the crash. The safe,
 * repeatable ones (pause, resume, resize, stop, destroy, app_stop,
 * app_resize) are carried out again under the same id, unless their effect
 * is already there. The others are settled from what is found: a start,
 * restore or app_start whose workload runs succeeded; a suspend whose save
 * file exists succeeded; anything else is reported "lost" with what is
 * known, so the controller decides again. Either way the outcome is recorded
 * and posted to the controller, and a retried id gets it. */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "actions_int.h"

/* The session leader carrying WLM_INSTANCE=id (an app_start cut off before
 * its instance was recorded); 0 when none. */
static long find_marked_leader(const char *id, unsigned long long *ticks)
{
    DIR *d = opendir("/proc");
    if (!d)
        return 0;
    long found = 0;
    struct dirent *e;
    while (!found && (e = readdir(d))) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9')
            continue;
        long pid = atol(e->d_name);
        unsigned long long st = 0;
        char why[300];
        if (pid == getpid() || nodeagent_proc_start_ticks(pid, &st) < 0)
            continue;
        struct nodeagent_proc_usage u;
        if (nodeagent_proc_check(pid, st, id, NULL, why, sizeof(why)) == 0 &&
            nodeagent_proc_session_usage(pid, &u) == 0 && getsid((pid_t)pid) == (pid_t)pid) {
            found = pid;
            *ticks = st;
        }
    }
    closedir(d);
    return found;
}

void na_recover_instances(struct nodeagent *a)
{
    struct nodeagent_inst_rec *recs = NULL;
    size_t n = 0;
    if (!a->proc || nodeagent_repo_inst_list(a->repo, &recs, &n, NULL) < 0)
        return;
    for (size_t i = 0; i < n; i++) {
        struct wlm_error err = {0};
        if (nodeagent_process_adopt(a->proc, &recs[i], &err) == 0) {
            wlm_info(NA_COMP, "recover: app instance re-adopted", "instance=%s pid=%ld", recs[i].id,
                     recs[i].pid);
        } else {
            /* Listed as shut off until the controller stops it. */
            nodeagent_repo_inst_delete(a->repo, recs[i].id, NULL);
            wlm_warn(NA_COMP, "recover: app instance gone", "instance=%s detail=\"%s\"", recs[i].id,
                     err.msg);
        }
    }
    free(recs);
}

static int vm_alive(struct nodeagent *a, const char *job, enum nodeagent_wl_state *st)
{
    struct nodeagent_wl_info wi = {0};
    *st = NODEAGENT_WL_NONE;
    if (!a->vm || a->vm->ops->info(a->vm, job, &wi, NULL) < 0)
        return 0;
    *st = wi.state;
    return wi.state != NODEAGENT_WL_SHUTOFF && wi.state != NODEAGENT_WL_NONE;
}

static const char *param_str(const char *params, const char *key, char *out, size_t n)
{
    json_t *p = json_loads(params ? params : "{}", 0, NULL);
    const char *v = p ? json_string_value(json_object_get(p, key)) : NULL;
    wlm_strlcpy(out, v ? v : "", n);
    json_decref(p);
    return out[0] ? out : NULL;
}

/* A live migration cut off with this agent: libvirt ended it without us,
 * but may have left the guest half on each side (see drv_libvirt_peer.c).
 * Exactly one copy goes on: the destination's if it runs (this side's,
 * paused for a confirm that never came, is stale and goes), else this
 * side's, resumed if the migration left it paused. When the destination
 * cannot be asked, a paused copy here stays paused: running it while the
 * other may run would corrupt the shared disk. 1 when the job's record
 * was settled here. */
static int migrate_peer(struct nodeagent *a, const struct nodeagent_action_rec *ar,
                        struct nodeagent_vm_rec *r)
{
    char dest[600], detail[400];
    enum nodeagent_wl_state st;
    if (!param_str(ar->params, "dest_uri", dest, sizeof(dest)))
        return 0; /* a suspend + restore migration: the save file tells */
    int here = vm_alive(a, r->job, &st);
    int peer = nodeagent_libvirt_peer_outcome(a->vm, dest, r->uuid, detail, sizeof(detail));
    if (peer == NODEAGENT_PEER_RUNNING) {
        if (here && a->vm->ops->stop(a->vm, r->job, 1, NULL) < 0)
            here = -1;
        wlm_strlcpy(r->state, "migrated", sizeof(r->state));
        nodeagent_repo_put(a->repo, r, NULL);
    } else if (here && st == NODEAGENT_WL_PAUSED && peer == NODEAGENT_PEER_ABSENT) {
        if (a->vm->ops->resume(a->vm, r->job, NULL) == 0) {
            wlm_strlcpy(r->state, "running", sizeof(r->state));
            nodeagent_repo_put(a->repo, r, NULL);
        }
    } else if (!here) {
        return 0;
    }
    wlm_info(NA_COMP, "recover: cut-off live migration", "action=%s job=%s peer=\"%s\" state=%s%s",
             ar->id, r->job, detail, r->state,
             here < 0 ? " (the stale copy here could not be removed)" : "");
    return 1;
}

/* Before reconcile: a suspend, migrate, stop or destroy that got as far as
 * removing the domain must not look like a job that ended by itself. */
void na_recover_actions_pre(struct nodeagent *a)
{
    struct nodeagent_action_rec *acts = NULL;
    size_t n = 0;
    if (!a->vm || nodeagent_repo_action_running(a->repo, &acts, &n, NULL) < 0)
        return;
    for (size_t i = 0; i < n; i++) {
        const char *k = acts[i].kind;
        struct nodeagent_vm_rec r;
        enum nodeagent_wl_state st;
        if ((strcmp(k, "suspend") && strcmp(k, "migrate") && strcmp(k, "stop") &&
             strcmp(k, "destroy")) ||
            nodeagent_repo_get(a->repo, acts[i].target, &r, NULL) < 0 || !na_rec_live(&r))
            continue;
        /* libvirt carries a save or migration on without the agent that
         * asked for it: wait for its end (bounded) before judging. */
        for (int w = 0; w < 1200 && nodeagent_libvirt_job_active(a->vm, r.job); w++) {
            if (w == 0)
                wlm_info(NA_COMP, "recover: waiting for libvirt's job on the domain to end",
                         "action=%s kind=%s job=%s", acts[i].id, k, r.job);
            usleep(100000);
        }
        if (!strcmp(k, "migrate") && migrate_peer(a, &acts[i], &r))
            continue;
        if (vm_alive(a, r.job, &st))
            continue;
        char save[600];
        if (!param_str(acts[i].params, "path", save, sizeof(save)) || strcmp(k, "suspend"))
            na_save_path_of(a, r.job, save, sizeof(save));
        int saved = access(save, R_OK) == 0;
        if (!strcmp(k, "stop"))
            wlm_strlcpy(r.state, "stopped", sizeof(r.state));
        else if (!strcmp(k, "destroy"))
            wlm_strlcpy(r.state, "destroyed", sizeof(r.state));
        else if (saved)
            wlm_strlcpy(r.state, "suspended", sizeof(r.state));
        else if (!strcmp(k, "migrate"))
            wlm_strlcpy(r.state, "migrated", sizeof(r.state)); /* live, or restored there */
        else
            continue; /* a suspend without its file: the job ended; reconcile says how */
        if (saved && strcmp(k, "stop") && strcmp(k, "destroy"))
            wlm_strlcpy(r.save_path, save, sizeof(r.save_path));
        nodeagent_repo_put(a->repo, &r, NULL);
        wlm_info(NA_COMP, "recover: domain gone under an interrupted action",
                 "action=%s kind=%s "
                 "job=%s state=%s",
                 acts[i].id, k, r.job, r.state);
    }
    for (size_t i = 0; i < n; i++)
        nodeagent_action_rec_fini(&acts[i]);
    free(acts);
}

/* The outcome of a settled action, recorded and sent like any other. */
static void settle(struct nodeagent *a, const struct nodeagent_action_rec *ar, int ok,
                   json_t *result, const char *detail)
{
    struct na_action *x = na_action_new(a, ar->id, ar->kind, ar->target,
                                        json_loads(ar->params ? ar->params : "{}", 0, NULL));
    if (!x) {
        json_decref(result);
        return;
    }
    x->recovered = 1;
    if (ok) {
        na_set_result(x, result ? result : json_object());
        json_object_set_new(x->result, "recovered", json_true());
    } else {
        json_decref(result);
        /* "lost": cut off by the crash, its effect not there. */
        x->lost = 1;
        wlm_error_set(&x->err, WLM_EIO, "%s", detail);
    }
    x->t_accept = x->t_start = wlm_now_mono();
    x->next = a->actions;
    a->actions = x;
    na_action_finish(x);
    wlm_info(NA_COMP, "recover: interrupted action settled", "id=%s kind=%s target=%s status=%s",
             x->id, x->kind, x->job, x->status);
}

/* Carry an interrupted repeatable action out again under its id. */
static int rerun(struct nodeagent *a, const struct nodeagent_action_rec *ar)
{
    json_t *params = json_loads(ar->params ? ar->params : "{}", 0, NULL);
    if (!params)
        return -1;
    struct na_action *x = na_action_new(a, ar->id, ar->kind, ar->target, params);
    if (!x) {
        json_decref(params);
        return -1;
    }
    x->recovered = 1;
    struct wlm_error err = {0};
    if (na_action_check(x, &err) < 0) {
        na_action_free(x);
        return -1;
    }
    wlm_info(NA_COMP, "recover: carrying out an interrupted action again",
             "id=%s kind=%s "
             "target=%s",
             ar->id, ar->kind, ar->target);
    na_action_launch(x);
    return 0;
}

/* A live migration that finished without the agent that drove it: the
 * target agent has not taken the job into its repository yet. Ask it now,
 * as the uninterrupted migrate would have (act_migrate.c), and settle the
 * action by its answer. */
static int adopt_again(struct nodeagent *a, const struct nodeagent_action_rec *ar,
                       const struct nodeagent_vm_rec *r)
{
    json_t *params = json_loads(ar->params ? ar->params : "{}", 0, NULL);
    const char *t = params ? json_string_value(json_object_get(params, "target")) : NULL;
    char dest[600];
    if (!t || !*t || !param_str(ar->params, "dest_uri", dest, sizeof(dest))) {
        json_decref(params);
        return 0; /* no target agent to tell, or not a live migration */
    }
    struct na_action *x = na_action_new(a, ar->id, ar->kind, ar->target, params);
    if (!x) {
        json_decref(params);
        return 0;
    }
    x->recovered = 1;
    wlm_strlcpy(x->target, t, sizeof(x->target));
    x->rec = *r;
    x->stage = 1;
    x->mstats = (struct nodeagent_migrate_stats){-1, -1, -1};
    x->t_accept = x->t_start = wlm_now_mono();
    wlm_strlcpy(x->status, "running", sizeof(x->status));
    x->next = a->actions;
    a->actions = x;
    wlm_info(NA_COMP, "recover: the cut-off live migration finished; asking the target to adopt",
             "id=%s job=%s target=%s", x->id, x->job, x->target);
    na_migrate_after(x);
    return 1;
}

static int proc_alive(struct nodeagent *a, const char *id, long *pid)
{
    struct nodeagent_wl_info wi = {0};
    *pid = 0;
    if (!a->proc || a->proc->ops->info(a->proc, id, &wi, NULL) < 0)
        return 0;
    *pid = wi.pid;
    return wi.state == NODEAGENT_WL_RUNNING || wi.state == NODEAGENT_WL_PAUSED;
}

static void recover_one(struct nodeagent *a, const struct nodeagent_action_rec *ar)
{
    const char *k = ar->kind;
    char detail[400];
    struct nodeagent_vm_rec r;
    int have = ar->target[0] && nodeagent_repo_get(a->repo, ar->target, &r, NULL) == 0;
    const char *state = have ? r.state : "unknown on this node";
    long ipid = 0;
    if (na_kind_is_app(k))
        state = proc_alive(a, ar->target, &ipid) ? "still running" : "gone";
    enum nodeagent_wl_state live = NODEAGENT_WL_NONE;
    if (have)
        vm_alive(a, r.job, &live);
    if (!strcmp(k, "start") || !strcmp(k, "restore")) {
        int ran = have && (!strcmp(state, "running") || !strcmp(state, "paused") ||
                           !strcmp(state, "finished") || !strcmp(state, "failed"));
        if (ran) {
            settle(a, ar, 1,
                   json_pack("{s:s,s:s,s:s}", "state", state, "domain", r.domain, "uuid", r.uuid),
                   NULL);
        } else {
            snprintf(detail, sizeof(detail), "the agent restarted before job %s ran (it is %s)",
                     ar->target, state);
            settle(a, ar, 0, NULL, detail);
        }
        return;
    }
    if (!strcmp(k, "migrate") && have && !strcmp(state, "migrated") && adopt_again(a, ar, &r))
        return;
    if (!strcmp(k, "suspend") || !strcmp(k, "migrate")) {
        int done = have && !strcmp(state, !strcmp(k, "suspend") ? "suspended" : "migrated");
        if (done) {
            settle(a, ar, 1,
                   !strcmp(k, "suspend")
                       ? json_pack("{s:s,s:s}", "state", "suspended", "path", r.save_path)
                       : json_pack("{s:s}", "mode", "unknown"),
                   NULL);
        } else if (have && !strcmp(state, "suspended")) {
            snprintf(detail, sizeof(detail),
                     "the agent restarted after saving job %s; it is suspended at %s (restore it)",
                     ar->target, r.save_path);
            settle(a, ar, 0, NULL, detail);
        } else {
            snprintf(detail, sizeof(detail), "the agent restarted during the %s; job %s is %s here",
                     k, ar->target, state);
            settle(a, ar, 0, NULL, detail);
        }
        return;
    }
    if (!strcmp(k, "pause") || !strcmp(k, "resume")) {
        enum nodeagent_wl_state want =
            !strcmp(k, "pause") ? NODEAGENT_WL_PAUSED : NODEAGENT_WL_RUNNING;
        if (have && live == want) {
            wlm_strlcpy(r.state, !strcmp(k, "pause") ? "paused" : "running", sizeof(r.state));
            nodeagent_repo_put(a->repo, &r, NULL);
            settle(a, ar, 1, json_pack("{s:s}", "state", r.state), NULL);
            return;
        }
    } else if (!strcmp(k, "stop") || !strcmp(k, "destroy")) {
        const char *want = !strcmp(k, "stop") ? "stopped" : "destroyed";
        if (have && !strcmp(state, want)) {
            settle(a, ar, 1, json_pack("{s:s}", "state", want), NULL);
            return;
        }
    } else if (!strcmp(k, "app_start")) {
        long pid = 0;
        if (!proc_alive(a, ar->target, &pid)) {
            /* Started, but not yet recorded when the agent died? */
            unsigned long long ticks = 0;
            long leader = find_marked_leader(ar->target, &ticks);
            if (leader > 0) {
                struct nodeagent_inst_rec ir = {0};
                wlm_strlcpy(ir.id, ar->target, sizeof(ir.id));
                ir.pid = leader;
                ir.start_ticks = ticks;
                if (nodeagent_process_adopt(a->proc, &ir, NULL) == 0) {
                    struct nodeagent_inst_rec full = {0};
                    nodeagent_process_identity(a->proc, ar->target, &full, NULL);
                    nodeagent_repo_inst_put(a->repo, &full, NULL);
                    pid = leader;
                }
            }
        }
        if (pid > 0 && proc_alive(a, ar->target, &pid)) {
            settle(a, ar, 1, json_pack("{s:I}", "pid", (json_int_t)pid), NULL);
        } else {
            snprintf(detail, sizeof(detail), "the agent restarted before instance %s ran",
                     ar->target);
            settle(a, ar, 0, NULL, detail);
        }
        return;
    } else if (!strcmp(k, "app_stop")) {
        long pid = 0;
        if (!proc_alive(a, ar->target, &pid)) {
            if (a->proc)
                a->proc->ops->stop(a->proc, ar->target, 1, NULL); /* drop a "gone" entry */
            nodeagent_repo_inst_delete(a->repo, ar->target, NULL);
            settle(a, ar, 1, json_pack("{s:s}", "state", "stopped"), NULL);
            return;
        }
    }
    /* Repeatable and not yet done: do it again; else it is lost. */
    if (strcmp(k, "power_off") && strcmp(k, "power_on") && strcmp(k, "pool_hint") &&
        rerun(a, ar) == 0)
        return;
    snprintf(detail, sizeof(detail), "the agent restarted during this %s; %s%s%s", k,
             ar->target[0] ? "its target is " : "send it again with a new id",
             ar->target[0] ? state : "", "");
    settle(a, ar, 0, NULL, detail);
}

void na_recover_actions(struct nodeagent *a)
{
    struct nodeagent_action_rec *acts = NULL;
    size_t n = 0;
    if (nodeagent_repo_action_running(a->repo, &acts, &n, NULL) < 0)
        return;
    if (n)
        wlm_info(NA_COMP, "recover: actions cut off by the last stop", "n=%zu", n);
    for (size_t i = 0; i < n; i++)
        recover_one(a, &acts[i]);
    for (size_t i = 0; i < n; i++)
        nodeagent_action_rec_fini(&acts[i]);
    free(acts);
}
