/* The VM-ID repository seen from outside (GET /v1/jobs, the heartbeat's
 * job fields, progress), jobs that end on their own (domain events, the
 * heartbeat's check), reconcile at start-up and simulated jobs. */
#include <stdlib.h>
#include <string.h>

#include "actions_int.h"

/* ------------------------------------------------------------ jobs */

static json_t *rec_json(const struct nodeagent_vm_rec *r)
{
    json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "job", r->job, "domain", r->domain,
                          "uuid", r->uuid, "state", r->state, "image", r->image, "hostname",
                          r->hostname, "mac", r->mac, "ip", r->ip);
    if (r->exit_status >= 0)
        json_object_set_new(o, "exit_status", json_integer(r->exit_status));
    if (r->save_path[0])
        json_object_set_new(o, "save_path", json_string(r->save_path));
    if (r->sim_total > 0) {
        double done = 1.0 - (r->sim_remaining > 0 ? r->sim_remaining : 0) / r->sim_total;
        json_object_set_new(o, "sim_remaining", json_real(r->sim_remaining));
        json_object_set_new(o, "progress", json_real(done < 0 ? 0 : done));
        json_object_set_new(o, "progress_source", json_string("simulated"));
    }
    return o;
}

/* The last "WLM-PROGRESS <0..100>" a job printed, as a fraction; -1 when
 * none. Reads the tail of the console log only. */
static double console_progress(struct nodeagent *a, const char *job)
{
    char path[1200];
    na_job_path(a, job, "console.log", path, sizeof(path));
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    char buf[16385];
    if (fseek(f, 0, SEEK_END) == 0) {
        long sz = ftell(f);
        fseek(f, sz > 16384 ? sz - 16384 : 0, SEEK_SET);
    }
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    for (size_t i = 0; i < n; i++)
        if (!buf[i])
            buf[i] = ' ';
    double best = -1;
    for (const char *p = buf; (p = strstr(p, "WLM-PROGRESS ")); p += 13) {
        char *end;
        double v = strtod(p + 13, &end);
        if (end != p + 13 && v >= 0 && v <= 100)
            best = v / 100.0;
    }
    return best;
}

static void add_progress(struct nodeagent *a, const struct nodeagent_vm_rec *r, json_t *o)
{
    if (r->sim_total > 0)
        return; /* simulated: rec_json has it */
    double p = console_progress(a, r->job);
    if (p >= 0) {
        json_object_set_new(o, "progress", json_real(p));
        json_object_set_new(o, "progress_source", json_string("guest"));
    }
}

json_t *na_jobs_json(struct nodeagent *a)
{
    json_t *o = json_object();
    struct nodeagent_vm_rec *recs = NULL;
    size_t n = 0;
    if (nodeagent_repo_list(a->repo, &recs, &n, NULL) < 0)
        return o;
    for (size_t i = 0; i < n; i++) {
        json_t *j = rec_json(&recs[i]);
        json_object_del(j, "job");
        json_object_set_new(j, "job_state", json_string(recs[i].state));
        json_object_del(j, "state");
        if (!strcmp(recs[i].state, "running") || !strcmp(recs[i].state, "paused"))
            add_progress(a, &recs[i], j);
        if (strcmp(recs[i].state, "destroyed") && strcmp(recs[i].state, "migrated"))
            json_object_set_new(o, recs[i].job, j);
        else
            json_decref(j);
    }
    free(recs);
    return o;
}

char *na_read_console(struct nodeagent *a, const char *job, size_t *len)
{
    char path[1200];
    na_job_path(a, job, "console.log", path, sizeof(path));
    FILE *f = fopen(path, "rb");
    *len = 0;
    if (!f)
        return NULL;
    struct wlm_buf b;
    wlm_buf_init(&b);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0 && b.len < (16u << 20))
        wlm_buf_append(&b, buf, n);
    fclose(f);
    *len = b.len;
    return wlm_buf_steal(&b);
}

void na_h_get_job(struct wlm_http_req *req, void *ud)
{
    struct nodeagent *a = ud;
    struct nodeagent_vm_rec r;
    struct wlm_error err = {0};
    if (nodeagent_repo_get(a->repo, req->params[0], &r, &err) < 0) {
        wlm_http_respond_werr(req, &err);
        return;
    }
    json_t *o = rec_json(&r);
    size_t len;
    char *text = na_read_console(a, r.job, &len);
    if (text) {
        struct nodeagent_console_state cs;
        char *out = NULL;
        nodeagent_console_parse(text, len, &cs, &out);
        json_object_set_new(o, "output", json_string(out ? out : ""));
        add_progress(a, &r, o);
        if (cs.exit_status >= 0)
            json_object_set_new(o, "console_exit_status", json_integer(cs.exit_status));
        free(out);
        free(text);
    }
    wlm_http_respond_json(req, 200, o);
}

void na_h_list_jobs(struct wlm_http_req *req, void *ud)
{
    struct nodeagent *a = ud;
    struct nodeagent_vm_rec *recs = NULL;
    size_t n = 0;
    struct wlm_error err = {0};
    if (nodeagent_repo_list(a->repo, &recs, &n, &err) < 0) {
        wlm_http_respond_werr(req, &err);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, rec_json(&recs[i]));
    free(recs);
    wlm_http_respond_json(req, 200, json_pack("{s:o}", "jobs", arr));
}

/* A job whose domain is gone while we believe it runs has finished: its
 * exit status comes from the console log ("WLM-EXIT n"). */
struct check_job {
    uv_work_t w;
    struct nodeagent *a;
    char job[128];
    int gone;
    char image[512];
};

static void check_run(uv_work_t *w)
{
    struct check_job *c = w->data;
    struct nodeagent_wl_info wi = {0};
    struct wlm_error err = {0};
    int r = c->a->vm->ops->info(c->a->vm, c->job, &wi, &err);
    c->gone = r == -WLM_ENOTFOUND || (r == 0 && wi.state == NODEAGENT_WL_SHUTOFF);
}

static void release_after(uv_work_t *w, int status)
{
    (void)status;
    struct na_action *x = w->data;
    struct nodeagent *a = x->a;
    na_action_free(x);
    na_pending_dec(a);
}

static void release_run(uv_work_t *w)
{
    na_release_image_run(w->data);
}

static void check_after(uv_work_t *w, int status)
{
    (void)status;
    struct check_job *c = w->data;
    struct nodeagent *a = c->a;
    struct nodeagent_vm_rec r;
    if (!a->stopping && c->gone && !na_job_busy(a, c->job) &&
        nodeagent_repo_get(a->repo, c->job, &r, NULL) == 0 && na_rec_live(&r)) {
        size_t len;
        char *text = na_read_console(a, c->job, &len);
        struct nodeagent_console_state cs = {.exit_status = -1};
        if (text)
            nodeagent_console_parse(text, len, &cs, NULL);
        free(text);
        r.exit_status = cs.exit_status;
        wlm_strlcpy(r.state, cs.exit_status == 0 ? "finished" : "failed", sizeof(r.state));
        nodeagent_repo_put(a->repo, &r, NULL);
        wlm_info(NA_COMP, "job ended", "job=%s state=%s exit_status=%d", r.job, r.state,
                 r.exit_status);
        /* Return its image to the pool (scrub runs off the loop). */
        if (a->pool && r.image[0]) {
            struct na_action *x = calloc(1, sizeof(*x));
            if (x) {
                x->a = a;
                x->image = wlm_strdup(r.image);
                x->work.data = x;
                na_pending_inc(a);
                if (uv_queue_work(a->loop, &x->work, release_run, release_after) != 0) {
                    na_pending_dec(a);
                    na_action_free(x);
                }
            }
        }
    }
    free(c);
    na_pending_dec(a);
}

static void check_job(struct nodeagent *a, const char *job)
{
    if (!a->vm || a->stopping)
        return;
    struct check_job *c = calloc(1, sizeof(*c));
    if (!c)
        return;
    c->a = a;
    wlm_strlcpy(c->job, job, sizeof(c->job));
    c->w.data = c;
    na_pending_inc(a);
    if (uv_queue_work(a->loop, &c->w, check_run, check_after) != 0) {
        free(c);
        na_pending_dec(a);
    }
}

void na_handle_event(struct nodeagent *a, const struct na_event *ev)
{
    wlm_debug(NA_COMP, "domain event", "job=%s event=%d detail=%d stopped=%d", ev->id, ev->event,
              ev->detail, ev->stopped);
    if (ev->stopped)
        check_job(a, ev->id);
}

/* Heartbeat hook: any live record without a live domain gets checked. */
void na_check_jobs(struct nodeagent *a, const struct nodeagent_wl_info *live, size_t n)
{
    struct nodeagent_vm_rec *recs = NULL;
    size_t nr = 0;
    if (nodeagent_repo_list(a->repo, &recs, &nr, NULL) < 0)
        return;
    for (size_t i = 0; i < nr; i++) {
        if (!na_rec_live(&recs[i]) || na_job_busy(a, recs[i].job))
            continue;
        int found = 0;
        for (size_t j = 0; j < n && !found; j++)
            found = !strcmp(live[j].id, recs[i].job) && live[j].state != NODEAGENT_WL_SHUTOFF;
        if (!found)
            check_job(a, recs[i].job);
    }
    free(recs);
}

int na_reconcile(struct nodeagent *a, struct wlm_error *err)
{
    if (!a->vm)
        return 0;
    struct nodeagent_vm_rec *recs = NULL;
    struct nodeagent_wl_info *live = NULL;
    size_t nr = 0, nl = 0;
    if (nodeagent_repo_list(a->repo, &recs, &nr, err) < 0)
        return err ? err->code : -WLM_EIO;
    if (a->vm->ops->list(a->vm, &live, &nl, err) < 0) {
        free(recs);
        return err ? err->code : -WLM_EIO;
    }
    struct nodeagent_reconcile rc;
    if (nodeagent_reconcile_compute(recs, nr, live, nl, &rc) < 0) {
        free(recs);
        free(live);
        return wlm_error_set(err, ENOMEM, "out of memory");
    }
    int adopted = 0, lost = 0;
    for (size_t i = 0; i < nr; i++) {
        struct nodeagent_vm_rec *r = &recs[i];
        switch (rc.verdict[i]) {
        case NODEAGENT_ADOPT:
            adopted++;
            nodeagent_pool_mark_used(a->pool, r->image);
            if (!strcmp(r->state, "starting") && rc.live_state[i] == NODEAGENT_WL_PAUSED) {
                /* The agent died between creating the domain (paused) and
                 * letting it run: finish the start rather than leave the job
                 * frozen. */
                struct wlm_error e2 = {0};
                /* "already running": it was QEMU still starting up (libvirt
                 * shows that as paused), which ends by itself. */
                if (a->vm->ops->resume(a->vm, r->job, &e2) == 0 ||
                    strstr(e2.msg, "already running"))
                    rc.live_state[i] = NODEAGENT_WL_RUNNING;
                else
                    wlm_warn(NA_COMP, "reconcile: could not resume a half-started job",
                             "job=%s error=\"%s\"", r->job, e2.msg);
            }
            wlm_strlcpy(r->state, rc.live_state[i] == NODEAGENT_WL_PAUSED ? "paused" : "running",
                        sizeof(r->state));
            nodeagent_repo_put(a->repo, r, NULL);
            wlm_info(NA_COMP, "reconcile: adopted running job", "job=%s state=%s", r->job,
                     r->state);
            break;
        case NODEAGENT_LOST:
            if (!strcmp(r->state, "starting")) {
                /* We died before its domain existed: it never ran, so it did
                 * not fail either. "lost" lets the controller place it again. */
                lost++;
                wlm_strlcpy(r->state, "lost", sizeof(r->state));
                nodeagent_repo_put(a->repo, r, NULL);
                wlm_warn(NA_COMP, "reconcile: start interrupted before the domain existed",
                         "job=%s", r->job);
                break;
            }
            /* Its domain is gone: it ended while we were away. The console
             * tells how; check_job records it. */
            lost++;
            nodeagent_pool_mark_used(a->pool, r->image);
            check_job(a, r->job);
            break;
        case NODEAGENT_SUSPENDED:
        case NODEAGENT_KEEP:
            if (!strcmp(r->state, "suspended") || !strcmp(r->state, "migrated"))
                nodeagent_pool_mark_used(a->pool, r->image);
            break;
        }
    }
    free(a->orphans);
    a->orphans = NULL;
    a->norphans = rc.norphans;
    if (rc.norphans) {
        a->orphans = calloc(rc.norphans, sizeof(*a->orphans));
        for (size_t i = 0; a->orphans && i < rc.norphans; i++) {
            wlm_strlcpy(a->orphans[i], rc.orphans[i], sizeof(a->orphans[i]));
            wlm_warn(NA_COMP, "reconcile: orphan domain not in the repository (left alone)",
                     "domain=wlm-%s", rc.orphans[i]);
        }
    }
    wlm_info(NA_COMP, "reconcile done", "records=%zu live=%zu adopted=%d ended=%d orphans=%zu", nr,
             nl, adopted, lost, rc.norphans);
    nodeagent_reconcile_fini(&rc);
    free(recs);
    free(live);
    return 0;
}

/* Simulated jobs (test driver): running time counts down between
 * heartbeats; at zero the domain goes and the job is finished, exit 0. */
struct sim_end {
    uv_work_t w;
    struct nodeagent *a;
    struct nodeagent_vm_rec rec;
};

static void sim_end_run(uv_work_t *w)
{
    struct sim_end *e = w->data;
    e->a->vm->ops->destroy(e->a->vm, e->rec.job, NULL);
    if (e->a->pool && e->rec.image[0])
        nodeagent_pool_release(e->a->pool, e->rec.image, NULL);
}

static void sim_end_after(uv_work_t *w, int status)
{
    (void)status;
    struct sim_end *e = w->data;
    struct nodeagent *a = e->a;
    struct nodeagent_vm_rec r;
    if (nodeagent_repo_get(a->repo, e->rec.job, &r, NULL) == 0 && !strcmp(r.state, "finishing")) {
        wlm_strlcpy(r.state, "finished", sizeof(r.state));
        r.exit_status = 0;
        r.sim_remaining = 0;
        nodeagent_repo_put(a->repo, &r, NULL);
        char path[1200];
        na_job_path(a, r.job, "console.log", path, sizeof(path));
        FILE *f = fopen(path, "a");
        if (f) {
            fprintf(f, "WLM-START job=%s\nsimulated job ran %.1f s\nWLM-EXIT 0\n", r.job,
                    r.sim_total);
            fclose(f);
        }
        wlm_info(NA_COMP, "job ended", "job=%s state=finished exit_status=0 simulated=1", r.job);
    }
    free(e);
    na_pending_dec(a);
}

void na_sim_tick(struct nodeagent *a, double dt)
{
    if (!a->vm || dt <= 0)
        return;
    struct nodeagent_vm_rec *recs = NULL;
    size_t n = 0;
    if (nodeagent_repo_list(a->repo, &recs, &n, NULL) < 0)
        return;
    for (size_t i = 0; i < n; i++) {
        struct nodeagent_vm_rec *r = &recs[i];
        if (strcmp(r->state, "running") || r->sim_remaining < 0 || na_job_busy(a, r->job))
            continue;
        r->sim_remaining -= dt;
        if (r->sim_remaining > 0) {
            nodeagent_repo_put(a->repo, r, NULL);
            continue;
        }
        /* Not "running" any more, so the heartbeat's check for vanished
         * domains leaves it to us. */
        wlm_strlcpy(r->state, "finishing", sizeof(r->state));
        nodeagent_repo_put(a->repo, r, NULL);
        struct sim_end *e = calloc(1, sizeof(*e));
        if (!e)
            continue;
        e->a = a;
        e->rec = *r;
        e->w.data = e;
        na_pending_inc(a);
        if (uv_queue_work(a->loop, &e->w, sim_end_run, sim_end_after) != 0) {
            free(e);
            na_pending_dec(a);
        }
    }
    free(recs);
}
