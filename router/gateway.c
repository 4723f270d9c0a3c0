/* gateway.c - wlm-router's gateway object: workers (one libuv loop each),
 * listeners, start/stop. The data path is split by concern: h1conn.c
 * (client connections, HTTP/1.1), h2session.c (HTTP/2), request.c
 * (request lifecycle), dispatch.c (shared scheduling state), upstream.c
 * (upstream pools), admin.c (admin API, stats); gw.h holds their types.
 *
 * Threads and fairness. N workers each run a libuv loop and accept on their
 * own SO_REUSEPORT socket; connections, requests and upstream connections
 * belong to one worker for their whole life. Scheduling state is ONE shared
 * dispatcher (config, SFQ queues, concurrency counters, per-instance
 * outstanding counts, stats) behind one mutex: a worker classifies and
 * enqueues under the lock, and whoever frees a slot (request completion,
 * config swap) picks the next requests in global SFQ order and hands each to
 * its owning worker (a list under the same lock plus uv_async_send). This
 * keeps WFQ order and the limit exact across workers; the critical sections
 * are a few hundred nanoseconds, and with one worker the lock is uncontended.
 *
 * Bodies stream both ways with a bounded window per stream (upstream.c,
 * request.c); small requests are kept whole so they can be retried. */
#include <errno.h>
#include <netdb.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gw.h"

/* ------------------------------------------------------------ workers */

static void expire_tick(uv_timer_t *t)
{
    struct rt_worker *w = t->data;
    struct router *r = w->r;
    uint64_t wake = 0;
    double now = rt_mono();
    pthread_mutex_lock(&r->mu);
    struct rt_state *s = r->cur;
    struct router_sched_item *it;
    while ((it = router_sched_expired(s->sched, now, rt_max_wait_of, s))) {
        struct rt_req *q = it->ud;
        q->st->qlen--;
        q->st->expired++;
        q->st->rejected++;
        q->verdict = 503;
        rt_ready_push(q);
        wake |= 1ull << (q->w->idx % 64);
    }
    /* Ejections end with time, which may make queued flows eligible. */
    rt_dispatch_locked(r, now, &wake);
    pthread_mutex_unlock(&r->mu);
    rt_wake_workers(r, wake, w);
    rt_maybe_drain(w);
}

static void conn_walk_close(uv_handle_t *h, void *arg)
{
    struct rt_worker *w = arg;
    if (uv_is_closing(h) || h->type != UV_TCP || h == (uv_handle_t *)&w->listener ||
        h == (uv_handle_t *)&w->admin || h == (uv_handle_t *)&w->tls_listener)
        return;
    /* Both owners start with their uv_tcp_t followed by a magic word. */
    unsigned magic = *(unsigned *)((char *)h + offsetof(struct rt_conn, magic));
    if (magic == RT_MAGIC_CONN) {
        conn_close((struct rt_conn *)h);
    } else if (magic == RT_MAGIC_UP) {
        struct rt_upconn *u = (struct rt_upconn *)h;
        if (u->req && !u->tunnel)
            up_fail(u, 1);
        else
            up_close(u);
    }
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *b = NULL;
    size_t n = 0, cap = 0, k;
    char tmp[65536];
    while ((k = fread(tmp, 1, sizeof tmp, f)) > 0) {
        if (rt_buf_add(&b, &n, &cap, tmp, k)) {
            free(b);
            fclose(f);
            return NULL;
        }
    }
    fclose(f);
    if (!b)
        b = rt_dup("");
    *len = n;
    return b;
}

/* SIGHUP: the config file and every certificate again; all or nothing. */
static void do_reload(struct router *r)
{
    struct wlm_error err = {0};
    struct router_config *cfg = NULL;
    char *text = NULL;
    size_t len = 0;
    if (r->config_path[0]) {
        text = slurp(r->config_path, &len);
        if (!text) {
            wlm_errorlog("router", "reload refused", "file=%s reason=%s", r->config_path,
                      strerror(errno));
            return;
        }
    } else {
        pthread_mutex_lock(&r->mu);
        text = rt_dup(r->cur->json ? r->cur->json : "{}");
        pthread_mutex_unlock(&r->mu);
        len = strlen(text);
    }
    if (router_config_parse(text, len, &cfg, &err) || router_set_config(r, cfg, &err)) {
        wlm_errorlog("router", "reload refused", "file=%s field=%s reason=%s",
                  r->config_path[0] ? r->config_path : "(in force)", err.field, err.msg);
        router_config_free(cfg);
        free(text);
        return;
    }
    pthread_mutex_lock(&r->mu);
    free(r->cur->json);
    r->cur->json = text;
    pthread_mutex_unlock(&r->mu);
    wlm_info("router", "reloaded", "file=%s tls=%s", r->config_path[0] ? r->config_path : "-",
             r->tport > 0 ? "yes" : "no");
}

void router_reload(struct router *r)
{
    r->reload = 1;
    uv_async_send(&r->w[0].async);
}

/* ------------------------------------------------------------ drain (SIGTERM) */

static void close_listeners(struct rt_worker *w)
{
    if (w->lclosed)
        return;
    w->lclosed = 1;
    uv_close((uv_handle_t *)&w->listener, NULL);
    if (w->has_tls)
        uv_close((uv_handle_t *)&w->tls_listener, NULL);
}

/* Each client connection finishes what it has and closes: idle ones now,
 * h1 ones after their last response (Connection: close), h2 ones after a
 * GOAWAY once their open streams are done. */
static void drain_walk(uv_handle_t *h, void *arg)
{
    struct rt_worker *w = arg;
    if (uv_is_closing(h) || h->type != UV_TCP || h == (uv_handle_t *)&w->listener ||
        h == (uv_handle_t *)&w->admin || h == (uv_handle_t *)&w->tls_listener)
        return;
    if (*(unsigned *)((char *)h + offsetof(struct rt_conn, magic)) != RT_MAGIC_CONN)
        return;
    struct rt_conn *c = (struct rt_conn *)h;
    if (c->admin || c->closing || c->ending)
        return;
    if (c->proto == P_H2 && c->h2) {
        nghttp2_submit_goaway(c->h2, NGHTTP2_FLAG_NONE,
                              nghttp2_session_get_last_proc_stream_id(c->h2), NGHTTP2_NO_ERROR,
                              NULL, 0);
        h2_flush(c);
    } else if (c->nreq == 0) {
        conn_end(c);
    } else {
        c->want_close = 1;
    }
}

static void drain_tick(uv_timer_t *t)
{
    struct rt_worker *w = t->data;
    struct router *r = w->r;
    if (atomic_load(&r->nconns) == 0 || rt_mono() >= r->drain_deadline) {
        if (atomic_load(&r->nconns))
            wlm_warn("router", "drain timed out", "open_connections=%d", atomic_load(&r->nconns));
        uv_timer_stop(t);
        router_stop(r);
    }
}

void router_drain(struct router *r)
{
    r->draining = 1;
    for (unsigned i = 0; i < r->nw; i++)
        uv_async_send(&r->w[i].async);
}

static void on_async(uv_async_t *a)
{
    struct rt_worker *w = a->data;
    if (w->idx == 0 && atomic_exchange(&w->r->reload, 0))
        do_reload(w->r);
    if (w->r->draining && !w->drain_started && !w->r->stop) {
        w->drain_started = 1;
        close_listeners(w);
        uv_walk(&w->loop, drain_walk, w);
        if (w->idx == 0) {
            struct router *r = w->r;
            r->drain_deadline = rt_mono() + r->o.drain_timeout_ms / 1e3;
            wlm_info("router", "draining", "open_connections=%d in_flight=%u timeout_ms=%u",
                     atomic_load(&r->nconns), r->inflight, r->o.drain_timeout_ms);
            uv_timer_start(&w->drain_timer, drain_tick, 0, 20);
        }
    }
    if (w->r->stop) {
        rt_drain_ready(w);
        uv_walk(&w->loop, conn_walk_close, w);
        close_listeners(w);
        uv_close((uv_handle_t *)&w->drain_timer, NULL);
        if (w->has_admin)
            uv_close((uv_handle_t *)&w->admin, NULL);
        uv_close((uv_handle_t *)&w->sweep, NULL);
        uv_close((uv_handle_t *)&w->flush, NULL);
        uv_close((uv_handle_t *)&w->async, NULL);
        return;
    }
    rt_drain_ready(w);
    rt_maybe_drain(w);
}

static void *worker_main(void *arg)
{
    struct rt_worker *w = arg;
    uv_run(&w->loop, UV_RUN_DEFAULT);
    return NULL;
}

static int bind_fd(const char *host, int port, int reuseport, int *out_port, struct wlm_error *err,
                   const char *what)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV},
                    *res = NULL;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    int rc = getaddrinfo(host, ps, &hints, &res);
    if (rc || !res)
        return rt_err(err, WLM_EINVAL, what, "%s: cannot resolve '%s': %s", what, host,
                      gai_strerror(rc));
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int one = 1;
    if (fd < 0) {
        freeaddrinfo(res);
        return rt_err(err, WLM_EIO, what, "%s: socket: %s", what, strerror(errno));
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuseport)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (bind(fd, res->ai_addr, res->ai_addrlen) || listen(fd, 1024)) {
        int e = errno;
        close(fd);
        freeaddrinfo(res);
        return rt_err(err, WLM_EIO, what, "%s: cannot listen on %s:%d: %s", what, host, port,
                      strerror(e));
    }
    freeaddrinfo(res);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    *out_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                               : ((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

int router_new(const struct router_opts *o, struct router_config *cfg, struct router **out,
               struct wlm_error *err)
{
    *out = NULL;
    struct router *r = calloc(1, sizeof *r);
    if (!r)
        return rt_err(err, ENOMEM, "", "out of memory");
    r->o = *o;
    snprintf(r->listen_host, sizeof r->listen_host, "%s", o->listen_host ? o->listen_host : "0.0.0.0");
    snprintf(r->admin_host, sizeof r->admin_host, "%s", o->admin_host ? o->admin_host : "127.0.0.1");
    snprintf(r->token, sizeof r->token, "%s", o->token ? o->token : "");
    r->o.listen_host = r->listen_host;
    r->o.admin_host = r->admin_host;
    r->o.token = r->token;
    if (!r->o.max_header_bytes) r->o.max_header_bytes = 16384;
    if (!r->o.max_body_bytes) r->o.max_body_bytes = 8u << 20;
    if (!r->o.header_timeout_ms) r->o.header_timeout_ms = 10000;
    if (!r->o.idle_timeout_ms) r->o.idle_timeout_ms = 60000;
    if (!r->o.eject_failures) r->o.eject_failures = 3;
    if (!r->o.eject_ms) r->o.eject_ms = 5000;
    if (!r->o.tls_handshake_timeout_ms) r->o.tls_handshake_timeout_ms = 10000;
    if (!r->o.drain_timeout_ms) r->o.drain_timeout_ms = 10000;
    snprintf(r->config_path, sizeof r->config_path, "%s", o->config_path ? o->config_path : "");
    r->o.config_path = r->config_path[0] ? r->config_path : NULL;
    pthread_mutex_init(&r->tls_mu, NULL);
    r->tport = -1;
    r->nw = o->workers ? o->workers : 1;
    if (r->nw > 64)
        r->nw = 64;
    pthread_mutex_init(&r->mu, NULL);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(r->idprefix, sizeof r->idprefix, "%08lx",
             (unsigned long)((ts.tv_nsec ^ (ts.tv_sec << 20) ^ getpid()) & 0xffffffff));
    r->w = calloc(r->nw, sizeof *r->w);
    if (!r->w) {
        free(r);
        return rt_err(err, ENOMEM, "", "out of memory");
    }
    for (unsigned i = 0; i < r->nw; i++)
        r->w[i].lfd = r->w[i].afd = r->w[i].tfd = -1;
    if (o->tls_listen_host || o->admin_tls) {
        if (!o->tls_cert || !o->tls_key) {
            rt_err(err, WLM_EINVAL, "--tls-cert",
                   "--tls-listen and --admin-tls need --tls-cert and --tls-key");
            goto fail;
        }
        snprintf(r->tls_host, sizeof r->tls_host, "%s",
                 o->tls_listen_host ? o->tls_listen_host : "");
        snprintf(r->tls_cert, sizeof r->tls_cert, "%s", o->tls_cert);
        snprintf(r->tls_key, sizeof r->tls_key, "%s", o->tls_key);
        r->tls = rt_tls_store_new(r->tls_cert, r->tls_key, cfg, err);
        if (!r->tls)
            goto fail;
    }
    if (o->access_log) {
        r->alog = rt_alog_open(o->access_log, err);
        if (!r->alog)
            goto fail;
    }
    struct rt_state *s = rt_state_build(r, cfg, err);
    if (!s)
        goto fail;
    uint64_t wake = 0;
    rt_state_install(r, s, &wake);
    if (o->config_json)
        s->json = rt_dup(o->config_json);
    int port = o->listen_port;
    for (unsigned i = 0; i < r->nw; i++) {
        /* SO_REUSEPORT only to share the port among our own workers: with
         * one worker a port already in use is an error, never a silent split. */
        int fd = bind_fd(r->listen_host, port, r->nw > 1, &port, err, "listen");
        if (fd < 0)
            goto fail;
        r->w[i].lfd = fd;
    }
    r->port = port;
    if (r->tls && o->tls_listen_host) {
        int tp = o->tls_listen_port;
        for (unsigned i = 0; i < r->nw; i++) {
            int fd = bind_fd(r->tls_host, tp, r->nw > 1, &tp, err, "tls-listen");
            if (fd < 0)
                goto fail;
            r->w[i].tfd = fd;
        }
        r->tport = tp;
    }
    if (o->admin_port >= 0) {
        int ap = o->admin_port;
        int fd = bind_fd(r->admin_host, ap, 0, &ap, err, "admin");
        if (fd < 0)
            goto fail;
        r->w[0].afd = fd;
        r->aport = ap;
    }
    for (unsigned i = 0; i < r->nw; i++) {
        struct rt_worker *w = &r->w[i];
        w->r = r;
        w->idx = i;
        uv_loop_init(&w->loop);
        w->loop.data = w;
        uv_async_init(&w->loop, &w->async, on_async);
        w->async.data = w;
        uv_check_init(&w->loop, &w->flush);
        w->flush.data = w;
        uv_timer_init(&w->loop, &w->drain_timer);
        w->drain_timer.data = w;
        uv_tcp_init(&w->loop, &w->listener);
        uv_tcp_open(&w->listener, w->lfd);
        w->lfd = -1;
        uv_listen((uv_stream_t *)&w->listener, 1024, rt_on_accept);
        if (w->tfd >= 0) {
            uv_tcp_init(&w->loop, &w->tls_listener);
            uv_tcp_open(&w->tls_listener, w->tfd);
            w->tfd = -1;
            uv_listen((uv_stream_t *)&w->tls_listener, 1024, rt_on_accept);
            w->has_tls = 1;
        }
        if (i == 0) {
            uv_timer_init(&w->loop, &w->sweep);
            w->sweep.data = w;
            uv_timer_start(&w->sweep, expire_tick, 20, 20);
            if (r->w[0].afd >= 0) {
                uv_tcp_init(&w->loop, &w->admin);
                uv_tcp_open(&w->admin, w->afd);
                w->afd = -1;
                uv_listen((uv_stream_t *)&w->admin, 128, rt_on_accept);
                w->has_admin = 1;
            }
        } else {
            /* Only worker 0 sweeps; keep the handle initialised for close. */
            uv_timer_init(&w->loop, &w->sweep);
            w->sweep.data = w;
        }
    }
    *out = r;
    return 0;
fail:
    for (unsigned i = 0; i < r->nw; i++) {
        if (r->w[i].lfd >= 0)
            close(r->w[i].lfd);
        if (r->w[i].afd >= 0)
            close(r->w[i].afd);
        if (r->w[i].tfd >= 0)
            close(r->w[i].tfd);
    }
    rt_tls_store_unref(r->tls);
    pthread_mutex_destroy(&r->tls_mu);
    rt_alog_close(r->alog);
    if (r->cur) {
        r->cur->cfg = NULL; /* the caller still owns cfg on failure */
        router_sched_free(r->cur->sched);
        for (size_t a = 0; a < cfg->napps; a++)
            free(r->cur->apps[a].inst);
        free(r->cur->apps);
        free(r->cur->st);
        free(r->cur);
    }
    for (size_t i = 0; i < r->ninsts; i++) {
        free(r->insts[i]->idle);
        free(r->insts[i]);
    }
    free(r->insts);
    for (size_t i = 0; i < r->nstats; i++)
        free(r->stats[i]);
    free(r->stats);
    free(r->w);
    pthread_mutex_destroy(&r->mu);
    free(r);
    return err ? err->code : -WLM_EINVAL;
}

int router_run(struct router *r)
{
    for (unsigned i = 1; i < r->nw; i++)
        pthread_create(&r->w[i].th, NULL, worker_main, &r->w[i]);
    worker_main(&r->w[0]);
    for (unsigned i = 1; i < r->nw; i++)
        pthread_join(r->w[i].th, NULL);
    return 0;
}

void router_stop(struct router *r)
{
    r->stop = 1;
    for (unsigned i = 0; i < r->nw; i++)
        uv_async_send(&r->w[i].async);
}

void router_free(struct router *r)
{
    if (!r)
        return;
    for (unsigned i = 0; i < r->nw; i++) {
        uv_run(&r->w[i].loop, UV_RUN_NOWAIT);
        uv_loop_close(&r->w[i].loop);
        rt_worker_free_reqs(&r->w[i]);
        free(r->w[i].obuf);
    }
    rt_alog_close(r->alog);
    rt_state_free(r->cur);
    for (size_t i = 0; i < r->ninsts; i++) {
        free(r->insts[i]->idle);
        free(r->insts[i]);
    }
    free(r->insts);
    for (size_t i = 0; i < r->nstats; i++)
        free(r->stats[i]);
    free(r->stats);
    free(r->w);
    pthread_mutex_destroy(&r->mu);
    rt_tls_store_unref(r->tls);
    pthread_mutex_destroy(&r->tls_mu);
    free(r);
}

int router_tls_port(const struct router *r)
{
    return r->tport;
}

int router_listen_port(const struct router *r)
{
    return r->port;
}

int router_admin_port(const struct router *r)
{
    return r->aport;
}
