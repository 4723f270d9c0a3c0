/* upstream.c - upstream keep-alive pools: connect, send, parse the response,
 * timeouts, retry of idempotent requests on another instance.
 *
 * Streaming: the request goes out as it arrives (up_pump) and the response
 * is passed on as it arrives (rt_resp_progress). Each direction buffers
 * about RT_WINDOW bytes: past that, the fast side is not read until the
 * slow side has taken half of it (up_check_pause / rt_up_resume here,
 * rt_body_check_pause / rt_body_resume for request bodies). The upstream
 * timeout is the time to the response head and then the longest silence
 * while the body is read (not counted while the client is the slow side). */
#include <strings.h>

#include "gw.h"

/* ------------------------------------------------------------ upstream */

static void up_release(struct rt_upconn *u, int reuse);

static void up_closed(uv_handle_t *h)
{
    struct rt_upconn *u = h->data;
    if (--u->handles == 0) {
        free(u->hk);
        free(u);
    }
}

static void idle_remove(struct rt_upconn *u)
{
    struct rt_upconn **pp = &u->inst->idle[u->w->idx];
    while (*pp) {
        if (*pp == u) {
            *pp = u->inext;
            break;
        }
        pp = &(*pp)->inext;
    }
    u->inext = NULL;
}

void up_close(struct rt_upconn *u)
{
    if (u->closing)
        return;
    u->closing = 1;
    if (!u->req)
        idle_remove(u);
    uv_close((uv_handle_t *)&u->tcp, up_closed);
    uv_close((uv_handle_t *)&u->timer, up_closed);
}

/* Upstream failed for request q. Retry idempotent requests that got no
 * response bytes and still have their whole body on another instance; else
 * answer 502/504, or cut the client's stream when its head already went out. */
void up_fail(struct rt_upconn *u, int timeout)
{
    struct rt_req *q = u->req;
    int got = u->got_bytes, reused = u->reused;
    u->req = NULL;
    up_close(u);
    if (!q)
        return;
    q->up = NULL;
    struct router *r = q->w->r;
    /* Only idempotent requests are retried: a POST on a connection that died
     * may already have been executed. */
    if (!timeout && !got && q->conn && q->tries < 3 && q->idempotent && !q->updropped) {
        /* A dead pooled connection is the pool's fault, not the instance's. */
        double now = rt_mono();
        pthread_mutex_lock(&r->mu);
        struct rt_inst *old = q->inst;
        if (!reused) {
            old->failures++;
            if (++old->fails >= r->o.eject_failures)
                rt_eject(r, old, now);
        }
        struct rt_state *s = r->cur;
        struct rt_app *app = NULL;
        for (size_t a = 0; a < s->cfg->napps && !app; a++)
            for (size_t i = 0; i < s->apps[a].n; i++)
                if (s->apps[a].inst[i] == old) {
                    app = &s->apps[a];
                    break;
                }
        struct rt_inst *in = NULL;
        if (app) {
            old->outstanding--;
            in = rt_select_inst(app, now, reused ? NULL : old);
            if (in) {
                in->outstanding++;
                in->requests++;
                q->inst = in;
            } else {
                old->outstanding++;
            }
        }
        pthread_mutex_unlock(&r->mu);
        if (in) {
            q->tries++;
            q->upsent = 0;
            up_start(q);
            return;
        }
    }
    if (q->streaming) {
        wlm_warn("router", "upstream failed mid-response", "id=%s instance=%s timeout=%d sent=%llu",
                 q->reqid, q->inst ? q->inst->id : "?", timeout,
                 (unsigned long long)q->bytes_out);
        q->aborted = 1;
        rt_release_slot(q, 0, 1);
        req_complete(q);
        return;
    }
    rt_resp_local(q, timeout ? 504 : 502, NULL,
                  timeout ? "upstream timed out" : "upstream connection failed");
    rt_release_slot(q, 0, !reused || timeout);
    req_complete(q);
}

/* The client left while its request was upstream: a streamed transfer is
 * cut (the upstream connection closes); a small one finishes and is then
 * dropped so the pooled connection survives. Returns 1 when q was freed. */
int up_abandon(struct rt_req *q)
{
    struct rt_upconn *u = q->up;
    if (!u || !(q->state == Q_STREAM || q->body_pending || u->rpaused))
        return 0;
    u->req = NULL;
    q->up = NULL;
    up_close(u);
    rt_release_slot(q, 0, 0);
    req_free(q);
    return 1;
}

static int up_on_hfield(http_parser *p, const char *at, size_t len)
{
    struct rt_upconn *u = p->data;
    if (u->in_value || u->hklen == 0) {
        if (u->hklen)
            rt_buf_add(&u->hk, &u->hklen, &u->hkcap, "", 1); /* end of value */
        u->in_value = 0;
    }
    return rt_buf_add(&u->hk, &u->hklen, &u->hkcap, at, len);
}

static int up_on_hvalue(http_parser *p, const char *at, size_t len)
{
    struct rt_upconn *u = p->data;
    if (!u->in_value) {
        rt_buf_add(&u->hk, &u->hklen, &u->hkcap, "", 1); /* end of name */
        u->in_value = 1;
    }
    return rt_buf_add(&u->hk, &u->hklen, &u->hkcap, at, len);
}


static int up_on_headers_complete(http_parser *p)
{
    struct rt_upconn *u = p->data;
    struct rt_req *q = u->req;
    if (!q)
        return -1;
    if (u->hklen && u->in_value)
        rt_buf_add(&u->hk, &u->hklen, &u->hkcap, "", 1);
    else if (u->hklen)
        rt_buf_add(&u->hk, &u->hklen, &u->hkcap, "\0", 2); /* name without value */
    if (p->status_code / 100 == 1 && p->status_code != 101) {
        u->hklen = 0;
        u->in_value = 0;
        return 0; /* interim response: skipped in on_message_complete */
    }
    if (p->status_code == 101 && !q->tunnel)
        return -1; /* an upgrade nobody asked for: 502 */
    rt_resp_reset(&q->resp);
    q->boff = 0;
    q->resp.status = p->status_code;
    /* Sized once: the headers as received plus X-Request-Id. */
    q->resp.hcap = u->hklen + 2 * 64 + sizeof q->reqid;
    q->resp.hb = malloc(q->resp.hcap);
    if (!q->resp.hb)
        q->resp.hcap = 0;
    const char *k = u->hk, *end = u->hk + u->hklen;
    while (k && k < end) {
        size_t nl = strlen(k);
        const char *v = k + nl + 1;
        if (v > end)
            break;
        size_t vl = strlen(v);
        if (!rt_hop_by_hop(k, nl))
            rt_buf_hdr(&q->resp.hb, &q->resp.hlen, &q->resp.hcap, k, nl, v, vl);
        else if (p->status_code == 101 && rt_ieq(k, nl, "upgrade") && vl < sizeof u->upgrade)
            memcpy(u->upgrade, v, vl), u->upgrade[vl] = 0;
        k = v + vl + 1;
    }
    rt_buf_hdr(&q->resp.hb, &q->resp.hlen, &q->resp.hcap, "X-Request-Id", 12, q->reqid,
               strlen(q->reqid));
    u->hklen = 0;
    u->in_value = 0;
    u->hdone = 1;
    /* For HEAD this is the length the upstream announced (passed on). */
    int nobody = p->status_code == 204 || p->status_code == 304;
    q->resp_clen = nobody                             ? 0
                   : p->content_length != ULLONG_MAX ? (long long)p->content_length
                                                     : -1;
    return q->head ? 1 : 0; /* HEAD: no body follows */
}

static int up_on_body(http_parser *p, const char *at, size_t len)
{
    struct rt_upconn *u = p->data;
    struct rt_req *q = u->req;
    if (!q)
        return -1;
    if (q->boff && q->boff == q->resp.blen)
        q->boff = q->resp.blen = 0; /* everything passed on: start over */
    return rt_buf_add(&q->resp.body, &q->resp.blen, &q->resp.bcap, at, len);
}

static int up_on_message_complete(http_parser *p)
{
    struct rt_upconn *u = p->data;
    if (p->status_code / 100 == 1 && p->status_code != 101) {
        u->hklen = 0;
        u->in_value = 0;
        return 0;
    }
    u->complete = 1;
    http_parser_pause(p, 1);
    return 0;
}

/* The first read of u's response: when it is a whole plain response, q gets
 * it as up_on_headers_complete + up_on_body would have built it and 1 is
 * returned (the caller finishes the request); else 0 and nothing changed. */
static int up_fast(struct rt_upconn *u, const char *b, size_t n)
{
    struct rt_req *q = u->req;
    if (!q || q->head || q->tunnel || q->body_pending)
        return 0;
    struct rt_fast f;
    /* the head is at most n bytes; a large body in the same read should not
     * size the header buffer (it grows if a head is larger) */
    size_t hcap = (n < 2048 ? n : 2048) + 64 + sizeof q->reqid, hlen = 0;
    char *hb = malloc(hcap);
    if (!hb)
        return 0;
    if (rt_fast_response(b, n, &f, &hb, &hlen, &hcap) ||
        rt_buf_hdr(&hb, &hlen, &hcap, "X-Request-Id", 12, q->reqid, strlen(q->reqid))) {
        free(hb);
        return 0;
    }
    rt_resp_reset(&q->resp);
    q->boff = 0;
    q->resp.status = f.status;
    q->resp.hb = hb;
    q->resp.hlen = hlen;
    q->resp.hcap = hcap;
    q->resp_clen = f.clen;
    if (f.clen && rt_buf_add(&q->resp.body, &q->resp.blen, &q->resp.bcap, b + f.head_len,
                             (size_t)f.clen)) {
        rt_resp_reset(&q->resp);
        return 0;
    }
    u->hdone = 1;
    u->complete = 1;
    u->fast_ka = f.keep_alive;
    return 1;
}

static const http_parser_settings up_settings = {
    .on_header_field = up_on_hfield,
    .on_header_value = up_on_hvalue,
    .on_headers_complete = up_on_headers_complete,
    .on_body = up_on_body,
    .on_message_complete = up_on_message_complete,
};

static void up_done(struct rt_upconn *u)
{
    struct rt_req *q = u->req;
    int ka = (u->fast_ka >= 0 ? u->fast_ka : http_should_keep_alive(&u->p)) && !u->noreuse &&
             !q->body_pending;
    u->deadline = 0; /* the timer may run on: up_timeout ignores it */
    u->req = NULL;
    q->up = NULL;
    up_release(u, ka);
    rt_release_slot(q, q->resp.status < 500, 0);
    req_complete(q);
}

/* Bytes of the response waiting for the client: the request's queue plus
 * what the client's socket has not taken yet. */
static size_t resp_pending(const struct rt_req *q)
{
    size_t n = q->resp.blen - q->boff;
    if (q->conn)
        n += uv_stream_get_write_queue_size((const uv_stream_t *)&q->conn->tcp);
    return n;
}

static void up_timeout(uv_timer_t *t);

static void up_check_pause(struct rt_upconn *u)
{
    struct rt_req *q = u->req;
    if (!q || u->rpaused || u->closing || resp_pending(q) <= RT_WINDOW)
        return;
    u->rpaused = 1;
    wlm_debug("router", "upstream paused", "id=%s pending=%zu", q->reqid, resp_pending(q));
    uv_read_stop((uv_stream_t *)&u->tcp);
    u->deadline = 0; /* the client is the slow side now: no upstream timeout */
    if (q->conn)
        conn_stall(q->conn, 1);
}

void rt_up_resume(struct rt_req *q)
{
    struct rt_upconn *u = q->up;
    if (!u || !u->rpaused || u->closing || resp_pending(q) > RT_WINDOW / 2)
        return;
    u->rpaused = 0;
    wlm_debug("router", "upstream resumed", "id=%s pending=%zu", q->reqid, resp_pending(q));
    uv_read_start((uv_stream_t *)&u->tcp, rt_worker_alloc, up_read);
    up_arm(u, u->w->r->up_timeout_ms);
    if (q->conn)
        conn_stall(q->conn, 0);
}

void rt_worker_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b)
{
    struct rt_worker *w = h->loop->data;
    *b = uv_buf_init(w->rbuf, sizeof w->rbuf);
}

static void up_read_(struct rt_upconn *u, ssize_t n, const uv_buf_t *b);

void up_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct rt_upconn *u = s->data;
    struct rt_worker *w = u->w;
    up_read_(u, n, b);
    rt_maybe_drain(w);
}

static void up_read_(struct rt_upconn *u, ssize_t n, const uv_buf_t *b)
{
    if (n == 0)
        return;
    if (u->tunnel) {
        rt_tunnel_from_upstream(u, n, b->base);
        return;
    }
    if (!u->req) { /* idle connection: the upstream closed it or sent garbage */
        up_close(u);
        return;
    }
    if (n < 0) {
        if (n == UV_EOF && u->got_bytes) {
            u->noreuse = 1;
            http_parser_execute(&u->p, &up_settings, NULL, 0);
            if (u->complete) {
                up_done(u);
                return;
            }
        }
        up_fail(u, 0);
        return;
    }
    u->got_bytes = 1;
    if (!u->fed && up_fast(u, b->base, (size_t)n)) { /* a whole plain response */
        up_done(u);
        return;
    }
    u->fed = 1;
    size_t k = http_parser_execute(&u->p, &up_settings, b->base, (size_t)n);
    if (u->complete && u->p.status_code == 101 && u->req->tunnel && u->req->conn) {
        rt_tunnel_start(u, b->base + k, (size_t)n - k);
        return;
    }
    if (u->complete) {
        if (k < (size_t)n) /* bytes after the response: not reusable */
            u->noreuse = 1;
        up_done(u);
        return;
    }
    if (HTTP_PARSER_ERRNO(&u->p) != HPE_OK) {
        u->got_bytes = 1; /* malformed response: do not retry */
        up_fail(u, 0);
        return;
    }
    if (u->hdone) {
        /* Head in, body still coming: pass on what is here and restart the
         * silence timer. */
        struct rt_req *q = u->req;
        q->state = Q_STREAM;
        up_arm(u, u->w->r->up_timeout_ms);
        rt_resp_progress(q);
        if (u->req == q)
            up_check_pause(u);
    }
}

/* Like the client connections' timers (conn_arm), the upstream timer is
 * lazy: re-arming it for every request or body chunk only moves
 * u->deadline unless the running timer would fire later than that. */
void up_arm(struct rt_upconn *u, unsigned ms)
{
    u->deadline = uv_now(&u->w->loop) + ms;
    if (uv_is_active((uv_handle_t *)&u->timer) && uv_timer_get_due_in(&u->timer) <= ms)
        return;
    uv_timer_start(&u->timer, up_timeout, ms, 0);
}

static void up_timeout(uv_timer_t *t)
{
    struct rt_upconn *u = t->data;
    struct rt_worker *w = u->w;
    if (!u->req || !u->deadline || u->tunnel)
        return;
    uint64_t now = uv_now(&w->loop);
    if (now < u->deadline) {
        uv_timer_start(&u->timer, up_timeout, u->deadline - now, 0);
        return;
    }
    up_fail(u, 1);
    rt_maybe_drain(w);
}

/* Hand the request bytes that arrived so far to the upstream socket. Once
 * the request is larger than RT_KEEP, written bytes are not kept. */
int up_pump(struct rt_req *q)
{
    struct rt_upconn *u = q->up;
    if (!u || !u->sending || u->closing || q->upsent >= q->uplen)
        return 0;
    int rc = rt_stream_write((uv_stream_t *)&u->tcp, q->upbytes + q->upsent, q->uplen - q->upsent);
    if (rc) {
        wlm_debug("router", "upstream write failed", "id=%s reason=%s", q->reqid, uv_strerror(rc));
        up_fail(u, 0); /* may complete and free q */
        return -1;
    }
    q->upsent = q->uplen;
    if (q->updropped || q->uplen > RT_KEEP) {
        q->updropped += q->uplen;
        q->uplen = q->upsent = 0;
    }
    if (!u->hdone) /* while the body goes up, the timeout counts silence */
        up_arm(u, u->w->r->up_timeout_ms);
    if (q->body_pending)
        rt_body_resume(q); /* written at once: the client may send more */
    return 0;
}

/* Request bytes waiting for the upstream: queued here plus unsent on its socket. */
size_t up_pending(const struct rt_req *q)
{
    size_t n = q->uplen - q->upsent;
    if (q->up && q->up->connected)
        n += uv_stream_get_write_queue_size((const uv_stream_t *)&q->up->tcp);
    return n;
}

static void up_send(struct rt_upconn *u)
{
    struct rt_req *q = u->req;
    http_parser_init(&u->p, HTTP_RESPONSE);
    u->p.data = u;
    u->got_bytes = 0;
    u->complete = 0;
    u->hklen = 0;
    u->in_value = 0;
    u->hdone = 0;
    u->fed = 0;
    u->fast_ka = -1;
    u->sending = 1;
    up_arm(u, q->w->r->up_timeout_ms);
    up_pump(q);
}

/* The upstream socket took its queued bytes: more of the body may come. */
void up_drained(struct rt_upconn *u)
{
    struct rt_req *q = u->req;
    if (u->tunnel) {
        rt_tunnel_upstream_drained(u);
        return;
    }
    if (q && q->body_pending)
        rt_body_resume(q);
}

static void up_connected(uv_connect_t *cr, int status)
{
    struct rt_upconn *u = cr->data;
    struct rt_worker *w = u->w;
    if (u->closing)
        return;
    if (status) {
        up_fail(u, 0);
        rt_maybe_drain(w);
        return;
    }
    u->connected = 1;
    uv_tcp_nodelay(&u->tcp, 1);
    uv_read_start((uv_stream_t *)&u->tcp, rt_worker_alloc, up_read);
    if (u->req)
        up_send(u);
    rt_maybe_drain(w);
}

static void up_release(struct rt_upconn *u, int reuse)
{
    if (!reuse || !u->inst->active || u->w->r->stop) {
        up_close(u);
        return;
    }
    u->reused = 1;
    u->sending = 0;
    u->inext = u->inst->idle[u->w->idx];
    u->inst->idle[u->w->idx] = u;
}

void up_start(struct rt_req *q)
{
    struct rt_worker *w = q->w;
    struct rt_inst *in = q->inst;
    struct rt_upconn *u = in->idle[w->idx];
    q->state = Q_UPSTREAM;
    if (u) {
        in->idle[w->idx] = u->inext;
        u->inext = NULL;
        u->req = q;
        q->up = u;
        up_send(u);
        return;
    }
    u = calloc(1, sizeof *u);
    if (!u) {
        rt_resp_local(q, 502, NULL, "out of memory");
        rt_release_slot(q, 0, 0);
        req_complete(q);
        return;
    }
    u->magic = RT_MAGIC_UP;
    u->w = w;
    u->inst = in;
    u->req = q;
    q->up = u;
    uv_tcp_init(&w->loop, &u->tcp);
    uv_timer_init(&w->loop, &u->timer);
    u->tcp.data = u->timer.data = u->creq.data = u;
    u->handles = 2;
    /* The connect gets the request's deadline too. */
    up_arm(u, w->r->up_timeout_ms);
    int rc = uv_tcp_connect(&u->creq, &u->tcp, (const struct sockaddr *)&in->sa, up_connected);
    if (rc)
        up_fail(u, 0);
}
