/* upstream.c - upstream keep-alive pools: connect, send, parse the response,
 * timeouts, retry of idempotent requests on another instance. */
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
 * response bytes on another instance; else answer 502/504. */
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
    if (!timeout && !got && q->conn && q->tries < 3 && q->idempotent) {
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
            up_start(q);
            return;
        }
    }
    rt_resp_local(q, timeout ? 504 : 502, NULL,
               timeout ? "upstream timed out" : "upstream connection failed");
    rt_release_slot(q, 0, !reused || timeout);
    req_complete(q);
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

int rt_hop_by_hop(const char *n, size_t nl)
{
    static const char *const hop[] = {"connection",        "keep-alive", "proxy-connection",
                                      "transfer-encoding", "upgrade",    "te",
                                      "trailer",           "content-length", "http2-settings",
                                      NULL};
    for (size_t i = 0; hop[i]; i++)
        if (rt_ieq(n, nl, hop[i]))
            return 1;
    return 0;
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
    if (p->status_code / 100 == 1)
        return 0; /* interim response: skipped in on_message_complete */
    rt_resp_reset(&q->resp);
    q->resp.status = p->status_code;
    const char *k = u->hk, *end = u->hk + u->hklen;
    while (k && k < end) {
        size_t nl = strlen(k);
        const char *v = k + nl + 1;
        if (v > end)
            break;
        size_t vl = strlen(v);
        if (!rt_hop_by_hop(k, nl))
            rt_buf_hdr(&q->resp.hb, &q->resp.hlen, &q->resp.hcap, k, nl, v, vl);
        k = v + vl + 1;
    }
    u->hklen = 0;
    u->in_value = 0;
    return q->head ? 1 : 0; /* HEAD: no body follows */
}

static int up_on_body(http_parser *p, const char *at, size_t len)
{
    struct rt_upconn *u = p->data;
    struct rt_req *q = u->req;
    if (!q)
        return -1;
    if (q->resp.blen + len > q->w->r->o.max_response_bytes)
        return -1;
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
    int ka = http_should_keep_alive(&u->p) && !u->noreuse;
    uv_timer_stop(&u->timer);
    u->req = NULL;
    q->up = NULL;
    up_release(u, ka);
    rt_buf_hdr(&q->resp.hb, &q->resp.hlen, &q->resp.hcap, "X-Request-Id", 12, q->reqid,
            strlen(q->reqid));
    rt_release_slot(q, q->resp.status < 500, 0);
    req_complete(q);
}

void rt_worker_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b)
{
    struct rt_worker *w = h->loop->data;
    *b = uv_buf_init(w->rbuf, sizeof w->rbuf);
}

static void up_read_(struct rt_upconn *u, ssize_t n, const uv_buf_t *b);

static void up_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
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
    size_t k = http_parser_execute(&u->p, &up_settings, b->base, (size_t)n);
    if (u->complete) {
        if (k < (size_t)n) /* bytes after the response: not reusable */
            u->noreuse = 1;
        up_done(u);
        return;
    }
    if (HTTP_PARSER_ERRNO(&u->p) != HPE_OK) {
        u->got_bytes = 1; /* malformed response: do not retry */
        up_fail(u, 0);
    }
}

static void up_timeout(uv_timer_t *t)
{
    struct rt_upconn *u = t->data;
    struct rt_worker *w = u->w;
    if (u->req)
        up_fail(u, 1);
    rt_maybe_drain(w);
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
    uv_timer_start(&u->timer, up_timeout, q->w->r->up_timeout_ms, 0);
    if (rt_stream_write((uv_stream_t *)&u->tcp, q->upbytes, q->uplen))
        up_fail(u, 0);
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
    uv_timer_start(&u->timer, up_timeout, w->r->up_timeout_ms, 0);
    int rc = uv_tcp_connect(&u->creq, &u->tcp, (const struct sockaddr *)&in->sa, up_connected);
    if (rc)
        up_fail(u, 0);
}
