/*
 * api.c - REST handlers for jobs. The I/O shell around the scheduler: it
 * reads the clock (through jobsched__now) and speaks HTTP; every decision is
 * made by the scheduler.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

static int parse_id(struct wlm_http_req *req, int64_t *id)
{
    const char *s = req->nparams > 0 ? req->params[0] : NULL;
    char *end;
    if (!s || !*s)
        goto bad;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v <= 0)
        goto bad;
    *id = v;
    return 0;
bad:
    wlm_http_respond_error(req, 400, "invalid", "job id '%s' is not a positive integer",
                           s ? s : "");
    return -1;
}

static json_t *parse_body(struct wlm_http_req *req)
{
    json_error_t je;
    if (!req->body || req->body_len == 0) {
        wlm_http_respond_error(req, 400, "invalid", "request body must be a JSON object");
        return NULL;
    }
    json_t *v = json_loadb(req->body, req->body_len, 0, &je);
    if (!v) {
        wlm_http_respond_error(req, 400, "invalid", "malformed JSON at line %d column %d: %s",
                               je.line, je.column, je.text);
        return NULL;
    }
    return v;
}

/* The job's owner is the caller's identity, whatever the body says. */
static void set_owner(json_t *body, const struct wlm_principal *p)
{
    json_t *jobs = json_object_get(body, "jobs");
    size_t i;
    json_t *o;
    if (json_is_array(jobs)) {
        json_array_foreach(jobs, i, o) set_owner(o, p);
        return;
    }
    if (!json_is_object(body))
        return;
    if (p->name[0])
        json_object_set_new(body, "owner", json_string(p->name));
    else
        json_object_del(body, "owner");
}

/* A submitter sees only its own jobs: the others do not exist for it. */
static int visible(const struct wlm_http_req *req, const struct jobsched_job *j)
{
    const struct wlm_principal *p = &req->principal;
    if (strcmp(p->role, "submitter") != 0)
        return 1;
    return j->owner && strcmp(j->owner, p->name) == 0;
}

static void respond_submission(struct wlm_http_req *req, struct jobsched_submission *sub)
{
    if (sub->rc) {
        wlm_http_respond_werr(req, &sub->err);
        return;
    }
    if (sub->duplicate)
        json_object_set_new(sub->resp, "duplicate", json_true());
    /* The audit trail names the jobs made: "jobs=12,13". */
    size_t i, used = (size_t)snprintf(req->audit, sizeof req->audit, "jobs=");
    json_t *j;
    json_array_foreach(json_object_get(sub->resp, "jobs"), i, j)
    {
        if (used >= sizeof req->audit)
            break;
        used += (size_t)snprintf(req->audit + used, sizeof req->audit - used, "%s%lld",
                                 i ? "," : "", (long long)json_integer_value(json_object_get(j, "id")));
    }
    wlm_http_respond_json(req, sub->duplicate ? 200 : 201, sub->resp);
    sub->resp = NULL; /* stolen */
}

/* ---- group commit: POSTs of one loop turn share one transaction ---- */

struct pending {
    struct wlm_http_req *req; /* NULL when the client went away */
    json_t *body;
    char *key;
    struct pending *next;
};

struct group {
    uv_timer_t timer;
    struct jobsched *js;
    struct pending *head, **tail;
    size_t n;
};

static void group_closed(uv_handle_t *h)
{
    free(h->data);
}

static void pending_abort(struct wlm_http_req *req)
{
    struct pending *p = req->user;
    /* The submission is still committed (a retry with the same key finds
     * it); there is just nobody left to answer. */
    if (p)
        p->req = NULL;
}

static void group_flush(uv_timer_t *t)
{
    struct group *g = t->data;
    struct jobsched *js = g->js;
    /* New POSTs from here on start the next group. */
    *jobsched__api_group(js) = NULL;
    struct jobsched_submission *subs = calloc(g->n ? g->n : 1, sizeof(*subs));
    size_t i = 0;
    for (struct pending *p = g->head; p; p = p->next, i++)
        if (subs) {
            subs[i].body = p->body;
            subs[i].idem_key = p->key;
        }
    if (subs)
        jobsched_submit_many(js, subs, g->n, jobsched__now(js));
    i = 0;
    for (struct pending *p = g->head, *next; p; p = next, i++) {
        next = p->next;
        if (p->req) {
            p->req->on_abort = NULL;
            p->req->user = NULL;
            if (subs)
                respond_submission(p->req, &subs[i]);
            else
                wlm_http_respond_error(p->req, 500, "internal", "out of memory");
        }
        if (subs)
            json_decref(subs[i].resp);
        json_decref(p->body);
        free(p->key);
        free(p);
    }
    free(subs);
    uv_close((uv_handle_t *)&g->timer, group_closed);
}

static int group_add(struct jobsched *js, struct wlm_http_req *req, json_t *body, const char *key)
{
    struct group **slot = (struct group **)jobsched__api_group(js);
    struct pending *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    if (!*slot) {
        struct group *g = calloc(1, sizeof(*g));
        if (!g) {
            free(p);
            return -ENOMEM;
        }
        g->js = js;
        g->tail = &g->head;
        uv_timer_init(jobsched__loop(js), &g->timer);
        g->timer.data = g;
        /* A zero timer runs at the start of the next loop turn, after every
         * request read in this one. */
        uv_timer_start(&g->timer, group_flush, 0, 0);
        *slot = g;
    }
    struct group *g = *slot;
    p->req = req;
    p->body = body;
    p->key = key ? wlm_strdup(key) : NULL;
    *g->tail = p;
    g->tail = &p->next;
    g->n++;
    req->user = p;
    req->on_abort = pending_abort;
    return 0;
}

static void h_submit(struct wlm_http_req *req, void *ud)
{
    struct jobsched *js = ud;
    json_t *body = parse_body(req);
    if (!body)
        return;
    set_owner(body, &req->principal);
    const char *key = wlm_http_req_header(req, "Idempotency-Key");
    if (key && (strlen(key) == 0 || strlen(key) > 200)) {
        json_decref(body);
        wlm_http_respond_error(req, 400, "invalid", "Idempotency-Key must be 1..200 bytes");
        return;
    }
    if (jobsched__loop(js)) {
        if (group_add(js, req, body, key) == 0)
            return;
    }
    struct jobsched_submission sub = {body, key, NULL, 0, 0, {0, "", ""}};
    jobsched_submit_many(js, &sub, 1, jobsched__now(js));
    json_decref(body);
    respond_submission(req, &sub);
    json_decref(sub.resp);
}

/* Compact row for listings. */
static json_t *summary_json(struct jobsched *js, const struct jobsched_job *j, double now)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_integer(j->id));
    json_object_set_new(o, "name", j->name ? json_string(j->name) : json_null());
    json_object_set_new(o, "state", json_string(jobsched_state_name(j->state)));
    json_object_set_new(o, "reason", json_string(j->reason));
    json_object_set_new(o, "class", json_string(jobsched_class_name(j->cls)));
    json_object_set_new(o, "owner", j->owner ? json_string(j->owner) : json_null());
    json_object_set_new(o, "submit_time", json_real(j->submit_time));
    json_object_set_new(o, "goal_time", json_real(j->goal_time));
    json_object_set_new(o, "node", j->node[0] ? json_string(j->node) : json_null());
    json_object_set_new(o, "alloc_mhz", json_real(j->alloc_mhz));
    double w = j->work_mcycles > 0 ? j->work_mcycles : 1;
    json_object_set_new(o, "progress", json_real(fmin(1.0, j->done_mcycles / w)));
    if (!jobsched_state_terminal(j->state)) {
        int running = j->state == JOBSCHED_RUNNING && j->alloc_mhz > 0;
        double t = jobsched_predict_completion(j, running ? j->alloc_mhz : jobsched_job_max_mhz(j),
                                               now);
        json_object_set_new(o, "predicted_completion", isfinite(t) ? json_real(t) : json_null());
    } else {
        json_object_set_new(o, "end_time", json_real(j->end_time));
    }
    (void)js;
    return o;
}

/* "a,b,c" membership, case-insensitive. */
static int in_list(const char *list, const char *v)
{
    size_t n = strlen(v);
    const char *p = list;
    while (p && *p) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        if (len == n && strncasecmp(p, v, n) == 0)
            return 1;
        p = c ? c + 1 : NULL;
    }
    return 0;
}

static void h_list(struct wlm_http_req *req, void *ud)
{
    struct jobsched *js = ud;
    char *state = wlm_http_req_query(req, "state");
    char *cls = wlm_http_req_query(req, "class");
    char *lim = wlm_http_req_query(req, "limit");
    long long limit = 1000;
    /* Validate the filters so a typo is an error, not an empty list. */
    const char *p = state;
    while (p && *p) {
        const char *c = strchr(p, ',');
        char one[32];
        size_t len = c ? (size_t)(c - p) : strlen(p);
        enum jobsched_state s;
        snprintf(one, sizeof(one), "%.*s", (int)(len < 31 ? len : 31), p);
        if (jobsched_state_parse(one, &s)) {
            wlm_http_respond_error(req, 400, "invalid", "query 'state': unknown state '%s'", one);
            goto out;
        }
        p = c ? c + 1 : NULL;
    }
    enum jobsched_class cv;
    if (cls && jobsched_class_parse(cls, &cv)) {
        wlm_http_respond_error(req, 400, "invalid",
                               "query 'class': unknown class '%s' (platinum, gold, silver, bronze)",
                               cls);
        goto out;
    }
    if (lim) {
        char *end;
        limit = strtoll(lim, &end, 10);
        if (*end || limit < 1 || limit > 1000000) {
            wlm_http_respond_error(req, 400, "invalid", "query 'limit': must be 1..1000000");
            goto out;
        }
    }
    size_t n;
    struct jobsched_job *const *all = jobsched_jobs(js, &n);
    double now = jobsched__now(js);
    /* The most recent `limit` matches, returned oldest first. */
    size_t total = 0, start = n;
    for (size_t i = n; i-- > 0;) {
        const struct jobsched_job *j = all[i];
        if (state && !in_list(state, jobsched_state_name(j->state)))
            continue;
        if (cls && j->cls != cv)
            continue;
        if (!visible(req, j))
            continue;
        total++;
        if ((long long)total <= limit)
            start = i;
    }
    json_t *arr = json_array();
    size_t shown = 0;
    for (size_t i = start; i < n && (long long)shown < limit; i++) {
        const struct jobsched_job *j = all[i];
        if (state && !in_list(state, jobsched_state_name(j->state)))
            continue;
        if (cls && j->cls != cv)
            continue;
        if (!visible(req, j))
            continue;
        json_array_append_new(arr, summary_json(js, j, now));
        shown++;
    }
    wlm_http_respond_json(req, 200,
                          json_pack("{s:o,s:I,s:I}", "jobs", arr, "total", (json_int_t)total,
                                    "shown", (json_int_t)shown));
out:
    free(state);
    free(cls);
    free(lim);
}

static const struct jobsched_job *lookup(struct wlm_http_req *req, struct jobsched *js)
{
    int64_t id;
    if (parse_id(req, &id))
        return NULL;
    const struct jobsched_job *j = jobsched_get(js, id);
    if (j && !visible(req, j))
        j = NULL; /* someone else's: as if it did not exist */
    if (!j)
        wlm_http_respond_error(req, 404, "not_found", "no job %lld", (long long)id);
    return j;
}

static void h_show(struct wlm_http_req *req, void *ud)
{
    struct jobsched *js = ud;
    const struct jobsched_job *j = lookup(req, js);
    if (j)
        wlm_http_respond_json(req, 200, jobsched_job_json(js, j, jobsched__now(js), 1));
}

static void h_cancel(struct wlm_http_req *req, void *ud)
{
    struct jobsched *js = ud;
    struct wlm_error err;
    wlm_error_clear(&err);
    const struct jobsched_job *j = lookup(req, js);
    if (!j)
        return;
    int64_t id = j->id;
    double now = jobsched__now(js);
    char *reason = wlm_http_req_query(req, "reason");
    int rc = jobsched_cancel(js, id, now, reason, &err);
    free(reason);
    if (rc) {
        wlm_http_respond_werr(req, &err);
        return;
    }
    wlm_http_respond_json(req, 200, jobsched_job_json(js, jobsched_get(js, id), now, 0));
}

static void h_utility(struct wlm_http_req *req, void *ud)
{
    struct jobsched *js = ud;
    const struct jobsched_job *j = lookup(req, js);
    if (!j)
        return;
    struct jobsched_point pts[64];
    double now = jobsched__now(js);
    size_t n = jobsched_utility_curve(j, now, jobsched_config(js), pts, WLM_ARRAY_LEN(pts));
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, json_pack("[f,f]", pts[i].x, pts[i].y));
    wlm_http_respond_json(req, 200,
                          json_pack("{s:I,s:f,s:f,s:o}", "id", (json_int_t)j->id, "now", now,
                                    "max_mhz", jobsched_job_max_mhz(j), "points", arr));
}

static void h_hypothetical(struct wlm_http_req *req, void *ud)
{
    struct jobsched *js = ud;
    size_t n;
    struct jobsched_job *const *all = jobsched_jobs(js, &n);
    const struct jobsched_job **q = calloc(n ? n : 1, sizeof(*q));
    if (!q) {
        wlm_http_respond_error(req, 500, "internal", "out of memory");
        return;
    }
    size_t m = 0;
    /* Queued = waiting to be placed: eligible, or pending only on nodes. */
    for (size_t i = 0; i < n; i++)
        if (all[i]->state == JOBSCHED_ELIGIBLE || all[i]->state == JOBSCHED_SUSPENDED)
            q[m++] = all[i];
    const struct jobsched_config *cfg = jobsched_config(js);
    double levels[21];
    size_t nl = 0;
    for (double v = cfg->utility_min; v <= cfg->utility_max + 1e-9 && nl < 21; v += 0.1)
        levels[nl++] = v;
    struct jobsched_point out[21];
    size_t bad[21];
    double now = jobsched__now(js);
    jobsched_hypothetical_utility(q, m, now, cfg, levels, nl, out, bad);
    json_t *arr = json_array();
    for (size_t i = 0; i < nl; i++)
        json_array_append_new(arr, json_pack("{s:f,s:f,s:I}", "utility", out[i].x, "mhz",
                                             isfinite(out[i].y) ? out[i].y : -1.0, "unreachable",
                                             (json_int_t)bad[i]));
    free(q);
    wlm_http_respond_json(req, 200,
                          json_pack("{s:f,s:I,s:o}", "now", now, "jobs", (json_int_t)m, "levels",
                                    arr));
}

static void h_usage(struct wlm_http_req *req, void *ud)
{
    struct jobsched *js = ud;
    struct wlm_error err;
    wlm_error_clear(&err);
    const struct jobsched_job *j = lookup(req, js);
    if (!j)
        return;
    int64_t id = j->id;
    json_t *body = parse_body(req);
    if (!body)
        return;
    static const char *const keys[] = {"done_mcycles", "threads", "speed_mhz", NULL};
    double done = 0, threads = 0, speed = 0;
    if (wlm_json_check_keys(body, keys, "usage", &err) ||
        wlm_json_get_num(body, "done_mcycles", 1, 0, 1e24, &done, &err) ||
        wlm_json_get_num(body, "threads", 0, 0, 1e6, &threads, &err) ||
        wlm_json_get_num(body, "speed_mhz", 0, 0, 1e7, &speed, &err) ||
        jobsched_report_usage(js, id, done, threads, speed, jobsched__now(js), &err)) {
        json_decref(body);
        wlm_http_respond_werr(req, &err);
        return;
    }
    json_decref(body);
    wlm_http_respond_json(req, 200, jobsched_job_json(js, jobsched_get(js, id),
                                                      jobsched__now(js), 0));
}

static void h_state(struct wlm_http_req *req, void *ud)
{
    struct jobsched *js = ud;
    struct wlm_error err;
    wlm_error_clear(&err);
    const struct jobsched_job *j = lookup(req, js);
    if (!j)
        return;
    int64_t id = j->id;
    json_t *body = parse_body(req);
    if (!body)
        return;
    static const char *const keys[] = {"state", "reason", "node", "alloc_mhz", NULL};
    const char *st = NULL, *reason = "", *node = NULL;
    double alloc = -1;
    enum jobsched_state to;
    double now = jobsched__now(js);
    int rc = wlm_json_check_keys(body, keys, "transition", &err);
    if (!rc)
        rc = wlm_json_get_str(body, "state", 1, &st, &err);
    if (!rc)
        rc = wlm_json_get_str(body, "reason", 0, &reason, &err);
    if (!rc)
        rc = wlm_json_get_str(body, "node", 0, &node, &err);
    if (!rc)
        rc = wlm_json_get_num(body, "alloc_mhz", 0, 0, 1e9, &alloc, &err);
    if (!rc && jobsched_state_parse(st, &to))
        rc = wlm_error_setf(&err, WLM_EINVAL, "state", "field 'state': unknown state '%s'", st);
    if (!rc && (node || alloc >= 0))
        rc = jobsched_set_placement(js, id, node ? node : j->node, alloc >= 0 ? alloc : j->alloc_mhz,
                                    now, &err);
    if (!rc)
        rc = jobsched_transition(js, id, to, now, reason, &err);
    json_decref(body);
    if (rc) {
        wlm_http_respond_werr(req, &err);
        return;
    }
    wlm_http_respond_json(req, 200, jobsched_job_json(js, jobsched_get(js, id), now, 0));
}

static void h_profiles(struct wlm_http_req *req, void *ud)
{
    struct jobsched *js = ud;
    const struct jobsched_profile *p;
    size_t n = jobsched__profiles(js, &p);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, json_pack("{s:s,s:I,s:f,s:f,s:f,s:f}", "kind", p[i].kind,
                                             "samples", (json_int_t)p[i].samples, "mcycles",
                                             p[i].mcycles, "threads", p[i].threads,
                                             "max_speed_mhz", p[i].max_speed_mhz, "updated",
                                             p[i].updated));
    wlm_http_respond_json(req, 200, json_pack("{s:o}", "profiles", arr));
}

int jobsched_api_register(struct wlm_http_server *srv, struct jobsched *js)
{
    int rc;
    if ((rc = wlm_http_server_route(srv, "POST", "/v1/jobs", 1, h_submit, js)) ||
        (rc = wlm_http_server_route(srv, "GET", "/v1/jobs", 1, h_list, js)) ||
        (rc = wlm_http_server_route(srv, "GET", "/v1/jobs/:id", 1, h_show, js)) ||
        (rc = wlm_http_server_route(srv, "DELETE", "/v1/jobs/:id", 1, h_cancel, js)) ||
        (rc = wlm_http_server_route(srv, "GET", "/v1/jobs/:id/utility", 1, h_utility, js)) ||
        (rc = wlm_http_server_route(srv, "POST", "/v1/jobs/:id/usage", 1, h_usage, js)) ||
        (rc = wlm_http_server_route(srv, "POST", "/v1/jobs/:id/state", 1, h_state, js)) ||
        (rc = wlm_http_server_route(srv, "GET", "/v1/jobqueue/hypothetical", 1, h_hypothetical,
                                    js)) ||
        (rc = wlm_http_server_route(srv, "GET", "/v1/jobprofiles", 1, h_profiles, js)))
        return rc;
    return 0;
}
