/* dispatch.c - the shared dispatcher: instances, SFQ admission under the global limit,
 * per-worker ready lists, slot release, passive ejection, config swap. */
#include <strings.h>

#include "gw.h"

/* ------------------------------------------------------------ state */

void rt_state_free(struct rt_state *s)
{
    if (!s)
        return;
    if (s->cfg)
        for (size_t a = 0; a < s->cfg->napps; a++)
            free(s->apps[a].inst);
    free(s->apps);
    free(s->st);
    router_sched_free(s->sched);
    router_config_free(s->cfg);
    free(s->json);
    free(s);
}

static struct rt_flowstat *stat_get(struct router *r, const char *name)
{
    for (size_t i = 0; i < r->nstats; i++)
        if (strcmp(r->stats[i]->name, name) == 0)
            return r->stats[i];
    struct rt_flowstat **n = realloc(r->stats, (r->nstats + 1) * sizeof *n);
    if (!n)
        return NULL;
    r->stats = n;
    struct rt_flowstat *st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    snprintf(st->name, sizeof st->name, "%s", name);
    r->stats[r->nstats++] = st;
    return st;
}

static int resolve(struct rt_inst *in, struct wlm_error *err)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    char port[16];
    snprintf(port, sizeof port, "%d", in->port);
    int rc = getaddrinfo(in->host, port, &hints, &res);
    if (rc || !res)
        return rt_err(err, WLM_EINVAL, "url", "instance '%s': cannot resolve '%s': %s", in->id,
                      in->host, gai_strerror(rc));
    memcpy(&in->sa, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

/* Called with the lock held. */
static struct rt_inst *inst_get(struct router *r, const struct router_instance_cfg *c,
                                struct wlm_error *err)
{
    for (size_t i = 0; i < r->ninsts; i++) {
        struct rt_inst *in = r->insts[i];
        if (strcmp(in->id, c->id) == 0 && strcmp(in->url, c->url) == 0)
            return in;
    }
    struct rt_inst *in = calloc(1, sizeof *in);
    struct rt_inst **n = realloc(r->insts, (r->ninsts + 1) * sizeof *n);
    if (!in || !n) {
        free(in);
        if (n)
            r->insts = n;
        rt_err(err, ENOMEM, "", "out of memory");
        return NULL;
    }
    r->insts = n;
    snprintf(in->id, sizeof in->id, "%s", c->id);
    snprintf(in->url, sizeof in->url, "%s", c->url);
    snprintf(in->host, sizeof in->host, "%s", c->host);
    in->port = c->port;
    in->idle = calloc(r->nw, sizeof *in->idle);
    if (!in->idle || resolve(in, err)) {
        free(in->idle);
        free(in);
        return NULL;
    }
    r->insts[r->ninsts++] = in;
    return in;
}

/* ------------------------------------------------------------ dispatcher (lock held) */

struct pick_ctx {
    struct router *r;
    double now;
};

static int inst_usable(const struct rt_inst *in, double now)
{
    return in->ejected_until <= now && (in->max_conc == 0 || in->outstanding < in->max_conc);
}

/* Least outstanding weighted by CPU allocation: the instance with the most
 * CPU per request in service. When every instance is ejected, the one whose
 * ejection ends first is tried (fail fast rather than queue forever). */
struct rt_inst *rt_select_inst(struct rt_app *app, double now, const struct rt_inst *avoid)
{
    struct rt_inst *best = NULL;
    double bs = 0;
    for (int pass = 0; pass < 2 && !best; pass++)
        for (size_t i = 0; i < app->n; i++) {
            struct rt_inst *in = app->inst[i];
            if (in == avoid && app->n > 1 && pass == 0)
                continue;
            if (!inst_usable(in, now))
                continue;
            double s = (in->outstanding + 1) / (in->cpu_mhz > 0 ? in->cpu_mhz : 1);
            if (!best || s < bs)
                best = in, bs = s;
        }
    if (!best) {
        int all_ejected = 1;
        for (size_t i = 0; i < app->n; i++)
            if (app->inst[i]->ejected_until <= now)
                all_ejected = 0;
        if (all_ejected)
            for (size_t i = 0; i < app->n; i++) {
                struct rt_inst *in = app->inst[i];
                if (in->max_conc && in->outstanding >= in->max_conc)
                    continue;
                if (!best || in->ejected_until < best->ejected_until)
                    best = in;
            }
    }
    return best;
}

static int flow_eligible(size_t flow, void *ud)
{
    struct pick_ctx *c = ud;
    struct rt_state *s = c->r->cur;
    struct rt_app *app = &s->apps[s->cfg->flows[flow].app];
    return app->n == 0 || rt_select_inst(app, c->now, NULL) != NULL;
}

void rt_ready_push(struct rt_req *q)
{
    struct rt_worker *w = q->w;
    q->rnext = NULL;
    if (w->ready_tail)
        w->ready_tail->rnext = q;
    else
        w->ready_head = q;
    w->ready_tail = q;
    q->state = Q_READY;
}

/* Admit queued requests while slots are free. Each admitted request is
 * pushed to its worker's ready list; *wake gets a bit per worker to wake. */
void rt_dispatch_locked(struct router *r, double now, uint64_t *wake)
{
    struct rt_state *s = r->cur;
    struct pick_ctx c = {r, now};
    while (r->inflight < s->cfg->limit) {
        struct router_sched_item *it = router_sched_pick(s->sched, flow_eligible, &c);
        if (!it)
            break;
        struct rt_req *q = it->ud;
        struct rt_app *app = &s->apps[s->cfg->flows[it->flow].app];
        q->st->qlen--;
        if (app->n == 0) {
            q->verdict = 503;
            q->st->rejected++;
        } else {
            struct rt_inst *in = rt_select_inst(app, now, NULL);
            in->outstanding++;
            in->requests++;
            q->inst = in;
            q->verdict = 0;
            r->inflight++;
            q->st->admitted++;
            q->st->inflight++;
            q->t_dispatch = now;
            rt_hist_add(&q->st->qwait, (now - q->t_arrive) * 1e3);
        }
        rt_ready_push(q);
        *wake |= 1ull << (q->w->idx % 64);
    }
}

double rt_max_wait_of(size_t flow, void *ud)
{
    struct rt_state *s = ud;
    const struct router_flow_ref *f = &s->cfg->flows[flow];
    return s->cfg->apps[f->app].classes[f->cls].max_wait_ms / 1e3;
}

void rt_wake_workers(struct router *r, uint64_t wake, struct rt_worker *self)
{
    for (unsigned i = 0; i < r->nw; i++) {
        if (!(wake & (1ull << (i % 64))))
            continue;
        if (&r->w[i] == self)
            self->need_drain = 1;
        else
            uv_async_send(&r->w[i].async);
    }
}



/* End of every libuv callback: admit what this worker was handed. */
void rt_maybe_drain(struct rt_worker *w)
{
    while (w->need_drain)
        rt_drain_ready(w);
}

/* Passive health check: consecutive failures take an instance out of
 * selection for eject_ms. Lock held. */
void rt_eject(struct router *r, struct rt_inst *in, double now)
{
    if (in->ejected_until <= now)
        wlm_warn("router", "instance ejected", "id=%s url=%s consecutive_failures=%u for_ms=%u",
                 in->id, in->url, in->fails, r->o.eject_ms);
    in->ejected_until = now + r->o.eject_ms / 1e3;
}

/* Release the slot of an admitted request and admit the next ones. */
void rt_release_slot(struct rt_req *q, int ok, int failed_inst)
{
    struct router *r = q->w->r;
    double now = rt_mono();
    uint64_t wake = 0;
    pthread_mutex_lock(&r->mu);
    if (q->inst) {
        q->inst->outstanding--;
        if (failed_inst) {
            q->inst->failures++;
            if (++q->inst->fails >= r->o.eject_failures)
                rt_eject(r, q->inst, now);
        } else if (ok) {
            q->inst->fails = 0;
        }
        q->inst = NULL;
        q->t_done = now;
        r->inflight--;
        q->st->inflight--;
        q->st->completed++;
        if (!ok)
            q->st->errors++;
        rt_hist_add(&q->st->resp, (now - q->t_arrive) * 1e3);
        q->st->svc_sum += now - q->t_dispatch;
        q->st->svc_n++;
    }
    rt_dispatch_locked(r, now, &wake);
    pthread_mutex_unlock(&r->mu);
    rt_wake_workers(r, wake, q->w);
}

/* ------------------------------------------------------------ ready list */

void rt_handle_ready(struct rt_req *q)
{
    if (!q->conn) { /* client left while the request was being handed over */
        if (q->verdict == 0) /* counted as completed with error */
            rt_release_slot(q, 0, 0);
        req_free(q);
        return;
    }
    if (q->refuse) { /* its body broke a limit while it waited here */
        if (q->verdict == 0)
            rt_release_slot(q, 0, 0);
        rt_resp_local(q, q->refuse, NULL, q->refuse_why ? q->refuse_why : "bad request body");
        req_complete(q);
        return;
    }
    if (q->verdict) {
        char ra[64];
        snprintf(ra, sizeof ra, "Retry-After: %u\r\n", (unsigned)q->w->r->retry_after_s);
        rt_resp_local(q, q->verdict, ra,
                   q->verdict == 503 ? "overloaded or no instance, retry later" : "rejected");
        req_complete(q);
        return;
    }
    q->tries = 1;
    up_start(q);
}

void rt_drain_ready(struct rt_worker *w)
{
    w->need_drain = 0;
    for (;;) {
        pthread_mutex_lock(&w->r->mu);
        struct rt_req *q = w->ready_head;
        w->ready_head = w->ready_tail = NULL;
        pthread_mutex_unlock(&w->r->mu);
        if (!q)
            return;
        while (q) {
            struct rt_req *n = q->rnext;
            rt_handle_ready(q);
            q = n;
        }
    }
}

/* ------------------------------------------------------------ config swap */

static void swap_reject(struct router_sched_item *it, void *ud)
{
    struct rt_req *q = it->ud;
    uint64_t *wake = ud;
    q->st->qlen--;
    q->st->rejected++;
    q->verdict = 503;
    rt_ready_push(q);
    *wake |= 1ull << (q->w->idx % 64);
}

/* Build the dispatcher state for cfg. Lock held (instances registry). */
struct rt_state *rt_state_build(struct router *r, struct router_config *cfg,
                                    struct wlm_error *err)
{
    struct rt_state *s = calloc(1, sizeof *s);
    int oom = 1;
    if (!s)
        goto fail;
    s->sched = router_sched_new(cfg->nflows);
    s->st = calloc(cfg->nflows + 1, sizeof *s->st);
    s->apps = calloc(cfg->napps + 1, sizeof *s->apps);
    if (!s->sched || !s->st || !s->apps)
        goto fail;
    for (size_t f = 0; f < cfg->nflows; f++) {
        char name[256];
        const struct router_class *cl = &cfg->apps[cfg->flows[f].app].classes[cfg->flows[f].cls];
        router_sched_set_flow(s->sched, f, cl->weight, cl->cost, cl->max_queue);
        s->st[f] = stat_get(r, router_flow_name(cfg, f, name, sizeof name));
        if (!s->st[f])
            goto fail;
    }
    for (size_t a = 0; a < cfg->napps; a++) {
        struct router_app *app = &cfg->apps[a];
        s->apps[a].inst = calloc(app->ninstances + 1, sizeof *s->apps[a].inst);
        if (!s->apps[a].inst)
            goto fail;
        for (size_t i = 0; i < app->ninstances; i++) {
            struct rt_inst *in = inst_get(r, &app->instances[i], err);
            if (!in) {
                oom = 0; /* inst_get described the error */
                goto fail;
            }
            s->apps[a].inst[s->apps[a].n++] = in;
        }
    }
    s->cfg = cfg;
    return s;
fail:
    if (oom)
        rt_err(err, ENOMEM, "", "out of memory");
    if (s) {
        if (s->apps)
            for (size_t k = 0; k < cfg->napps; k++)
                free(s->apps[k].inst);
        free(s->apps);
        free(s->st);
        router_sched_free(s->sched);
        free(s);
    }
    return NULL;
}

/* Install s (lock held): instance parameters, stats, and queued requests
 * move over; returns the old state for the caller to free. */
struct rt_state *rt_state_install(struct router *r, struct rt_state *s, uint64_t *wake)
{
    struct rt_state *old = r->cur;
    struct router_config *cfg = s->cfg;
    for (size_t i = 0; i < r->ninsts; i++)
        r->insts[i]->active = 0;
    for (size_t a = 0; a < cfg->napps; a++)
        for (size_t i = 0; i < cfg->apps[a].ninstances; i++) {
            struct rt_inst *in = s->apps[a].inst[i];
            in->active = 1;
            in->cpu_mhz = cfg->apps[a].instances[i].cpu_mhz;
            in->max_conc = cfg->apps[a].instances[i].max_concurrency;
        }
    for (size_t f = 0; f < cfg->nflows; f++) {
        const struct router_class *cl = &cfg->apps[cfg->flows[f].app].classes[cfg->flows[f].cls];
        s->st[f]->weight = cl->weight;
        s->st[f]->cost = cl->cost;
        s->st[f]->max_queue = cl->max_queue;
        s->st[f]->max_wait_ms = cl->max_wait_ms;
    }
    if (old) {
        long *map = calloc(old->cfg->nflows + 1, sizeof *map);
        for (size_t f = 0; f < old->cfg->nflows; f++) {
            char name[256];
            map[f] = router_config_find_flow(cfg, router_flow_name(old->cfg, f, name, sizeof name));
        }
        /* Stats objects are shared by name; queue lengths move with items. */
        router_sched_migrate(old->sched, s->sched, map, swap_reject, wake);
        free(map);
    }
    r->cur = s;
    r->up_timeout_ms = cfg->upstream_timeout_ms;
    r->retry_after_s = cfg->retry_after_s;
    return old;
}

int router_set_config(struct router *r, struct router_config *cfg, struct wlm_error *err)
{
    uint64_t wake = 0;
    struct rt_tls_store *tls = NULL;
    if (r->tport > 0 || r->o.admin_tls) { /* certificates first: a bad file refuses the swap */
        /* Same files (identity, size, mtime) and names as in force: keep the
         * store, so session tickets stay valid across frequent config pushes. */
        char *sig = rt_tls_signature(r->tls_cert, r->tls_key, cfg);
        pthread_mutex_lock(&r->tls_mu);
        if (rt_tls_store_same(r->tls, sig))
            tls = rt_tls_store_ref(r->tls);
        pthread_mutex_unlock(&r->tls_mu);
        free(sig);
        if (!tls)
            tls = rt_tls_store_new(r->tls_cert, r->tls_key, cfg, err);
        if (!tls) {
            wlm_warn("router", "config refused", "reason=%s", err ? err->msg : "TLS");
            return err ? err->code : -WLM_EINVAL;
        }
    }
    pthread_mutex_lock(&r->mu);
    struct rt_state *s = rt_state_build(r, cfg, err);
    if (!s) {
        pthread_mutex_unlock(&r->mu);
        rt_tls_store_unref(tls);
        return err ? err->code : -WLM_EINVAL;
    }
    struct rt_state *old = rt_state_install(r, s, &wake);
    rt_dispatch_locked(r, rt_mono(), &wake);
    pthread_mutex_unlock(&r->mu);
    if (tls) { /* open connections keep the store they started with */
        pthread_mutex_lock(&r->tls_mu);
        struct rt_tls_store *prev = r->tls;
        r->tls = tls;
        pthread_mutex_unlock(&r->tls_mu);
        rt_tls_store_unref(prev);
    }
    wlm_info("router", "config installed", "limit=%u apps=%zu flows=%zu", cfg->limit, cfg->napps,
             cfg->nflows);
    rt_state_free(old);
    rt_wake_workers(r, wake, NULL);
    return 0;
}
