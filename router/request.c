/* request.c - request lifecycle: intake (classify + enqueue), local responses,
 * the upstream HTTP/1.1 request, completion and abandonment. */
#include <strings.h>

#include "gw.h"

/* ------------------------------------------------------------ responses */

void rt_resp_reset(struct rt_resp *rs)
{
    free(rs->hb);
    free(rs->body);
    memset(rs, 0, sizeof *rs);
}

void rt_resp_local(struct rt_req *q, int status, const char *extra, const char *msg)
{
    rt_resp_reset(&q->resp);
    q->resp.status = status;
    rt_buf_printf(&q->resp.hb, &q->resp.hlen, &q->resp.hcap, "Content-Type: application/json\r\n%s",
               extra ? extra : "");
    rt_buf_printf(&q->resp.body, &q->resp.blen, &q->resp.bcap, "{\"error\":\"%s\",\"detail\":\"%s\"}\n",
               rt_reason(status), msg);
}


void req_free(struct rt_req *q)
{
    struct router *r = q->w->r;
    if (q->log && r->alog)
        rt_alog_request(r->alog, q);
    if (q->tunnel_counted) {
        pthread_mutex_lock(&r->mu);
        q->st->tunnels--;
        pthread_mutex_unlock(&r->mu);
    }
    rt_resp_reset(&q->resp);
    free(q->upbytes);
    /* Kept for the next request of this worker: no malloc/free per request. */
    struct rt_worker *w = q->w;
    if (w->nfreeq < 256) {
        q->rnext = w->freeq;
        w->freeq = q;
        w->nfreeq++;
        return;
    }
    free(q);
}

void rt_worker_free_reqs(struct rt_worker *w)
{
    while (w->freeq) {
        struct rt_req *q = w->freeq;
        w->freeq = q->rnext;
        free(q);
    }
    w->nfreeq = 0;
}

void conn_unlink(struct rt_conn *c, struct rt_req *q)
{
    if (q->cprev)
        q->cprev->cnext = q->cnext;
    else
        c->rhead = q->cnext;
    if (q->cnext)
        q->cnext->cprev = q->cprev;
    else
        c->rtail = q->cprev;
    q->cprev = q->cnext = NULL;
    c->nreq--;
}

/* The request has its response (local or upstream): deliver it or, if the
 * client is gone, free it. */
void req_complete(struct rt_req *q)
{
    q->state = Q_DONE;
    struct rt_conn *c = q->conn;
    if (!c) {
        req_free(q);
        return;
    }
    if (c->proto == P_H2)
        h2_respond(c, q);
    else
        conn_flush(c);
}

/* ------------------------------------------------------------ request intake */

/* "<router prefix>-<worker>-<hex seq>", unique per router run. */
static void rt_gen_reqid(struct rt_worker *w, char *out, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t pl = strlen(w->r->idprefix), o = 0;
    uint64_t v = ++w->seq;
    char t[17];
    int i = 16;
    if (n < pl + 24)
        return;
    memcpy(out, w->r->idprefix, pl);
    o = pl;
    out[o++] = '-';
    unsigned wi = w->idx % 100; /* no printf on the hot path */
    if (wi >= 10)
        out[o++] = (char)('0' + wi / 10);
    out[o++] = (char)('0' + wi % 10);
    out[o++] = '-';
    t[16] = 0;
    do
        t[--i] = hex[v & 15];
    while ((v >>= 4));
    memcpy(out + o, t + i, (size_t)(17 - i));
}

/* Build the upstream HTTP/1.1 request once (reused on retry). */
/* slen: RT_BODY_WHOLE = body[0..blen) is the whole body; >= 0 = a body of
 * slen bytes follows (rt_body_append); RT_BODY_CHUNKED = a body of unknown
 * length follows, sent chunk-encoded. */
int rt_build_upstream(struct rt_req *q, const char *method, const char *target, size_t tlen,
                      const char *authority, size_t alen, const struct router_hdr *h, size_t nh,
                      const char *body, size_t blen, long long slen, const char *peer)
{
    size_t len = 0, cap = tlen + alen + blen + 256;
    for (size_t i = 0; i < nh; i++)
        cap += h[i].name_len + h[i].value_len + 4;
    char *b = malloc(cap); /* sized once: no regrowth on the hot path */
    const char *xff = NULL;
    size_t xffl = 0;
    if (!b)
        return -1;
    int rc = rt_buf_str(&b, &len, &cap, method);
    rc |= rt_buf_add(&b, &len, &cap, " ", 1);
    rc |= rt_buf_add(&b, &len, &cap, target, tlen);
    rc |= rt_buf_add(&b, &len, &cap, " HTTP/1.1\r\n", 11);
    if (authority)
        rc |= rt_buf_hdr(&b, &len, &cap, "Host", 4, authority, alen);
    if (q->tunnel) { /* the hop-by-hop headers an Upgrade needs */
        rc |= rt_buf_str(&b, &len, &cap, "Connection: Upgrade\r\nUpgrade: ");
        rc |= rt_buf_str(&b, &len, &cap, q->upgrade);
        rc |= rt_buf_add(&b, &len, &cap, "\r\n", 2);
    }
    q->reqid[0] = 0;
    for (size_t i = 0; i < nh; i++) {
        if (rt_hop_by_hop(h[i].name, h[i].name_len))
            continue;
        if (authority && rt_ieq(h[i].name, h[i].name_len, "host"))
            continue;
        if (rt_ieq(h[i].name, h[i].name_len, "x-forwarded-for")) {
            xff = h[i].value, xffl = h[i].value_len;
            continue;
        }
        if (rt_ieq(h[i].name, h[i].name_len, "x-request-id") && h[i].value_len > 0 &&
            h[i].value_len < sizeof q->reqid)
            memcpy(q->reqid, h[i].value, h[i].value_len), q->reqid[h[i].value_len] = 0;
        rc |= rt_buf_hdr(&b, &len, &cap, h[i].name, h[i].name_len, h[i].value, h[i].value_len);
    }
    if (!q->reqid[0]) {
        rt_gen_reqid(q->w, q->reqid, sizeof q->reqid);
        rc |= rt_buf_hdr(&b, &len, &cap, "X-Request-Id", 12, q->reqid, strlen(q->reqid));
    }
    rc |= rt_buf_add(&b, &len, &cap, "X-Forwarded-For: ", 17);
    if (xff) {
        rc |= rt_buf_add(&b, &len, &cap, xff, xffl);
        rc |= rt_buf_add(&b, &len, &cap, ", ", 2);
    }
    rc |= rt_buf_str(&b, &len, &cap, peer);
    rc |= rt_buf_add(&b, &len, &cap, "\r\nVia: 1.1 wlm-router\r\n", 23);
    if (slen == RT_BODY_CHUNKED) {
        rc |= rt_buf_add(&b, &len, &cap, "Transfer-Encoding: chunked\r\n", 28);
        q->body_chunked = 1;
        q->body_pending = 1;
    } else if (slen >= 0) {
        rc |= rt_buf_add(&b, &len, &cap, "Content-Length: ", 16);
        rc |= rt_buf_u(&b, &len, &cap, (unsigned long long)slen);
        rc |= rt_buf_add(&b, &len, &cap, "\r\n", 2);
        q->body_pending = slen > 0;
    } else if (blen || !(strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0 ||
                         strcmp(method, "DELETE") == 0 || strcmp(method, "OPTIONS") == 0)) {
        rc |= rt_buf_add(&b, &len, &cap, "Content-Length: ", 16);
        rc |= rt_buf_u(&b, &len, &cap, blen);
        rc |= rt_buf_add(&b, &len, &cap, "\r\n", 2);
    }
    rc |= rt_buf_add(&b, &len, &cap, "\r\n", 2);
    if (blen)
        rc |= rt_buf_add(&b, &len, &cap, body, blen);
    if (rc) {
        free(b);
        return -1;
    }
    q->upbytes = b;
    q->uplen = len;
    q->upcap = cap;
    if (q->log) {
        snprintf(q->log_method, sizeof q->log_method, "%s", method);
        snprintf(q->log_path, sizeof q->log_path, "%.*s", (int)(tlen < 256 ? tlen : 256), target);
    }
    q->head = strcmp(method, "HEAD") == 0;
    q->idempotent = q->head || strcmp(method, "GET") == 0 || strcmp(method, "PUT") == 0 ||
                    strcmp(method, "DELETE") == 0 || strcmp(method, "OPTIONS") == 0;
    return 0;
}


struct rt_req *req_new(struct rt_conn *c)
{
    struct rt_worker *w = c->w;
    struct rt_req *q = w->freeq;
    if (q) {
        w->freeq = q->rnext;
        w->nfreeq--;
        memset(q, 0, sizeof *q);
    } else if (!(q = calloc(1, sizeof *q))) {
        return NULL;
    }
    q->w = c->w;
    q->conn = c;
    if (!c->admin && c->w->r->alog) {
        q->log = 1;
        snprintf(q->log_tls, sizeof q->log_tls, "%s", rt_tls_version(c));
        snprintf(q->log_alpn, sizeof q->log_alpn, "%s", rt_tls_alpn(c));
    }
    q->item.ud = q;
    q->t_arrive = rt_mono();
    q->cprev = c->rtail;
    if (c->rtail)
        c->rtail->cnext = q;
    else
        c->rhead = q;
    c->rtail = q;
    c->nreq++;
    return q;
}

/* Classify, enqueue, and admit what fits. The request is answered locally
 * when no application matches (404) or its flow's queue is full (503). */
void req_submit(struct rt_req *q, const char *host, size_t hostl, const char *path,
                       size_t plen, const struct router_hdr *h, size_t nh)
{
    struct router *r = q->w->r;
    struct router_reqinfo ri = {host, hostl, path, plen, h, nh};
    uint64_t wake = 0;
    int verdict = 0;
    unsigned retry_after = 1;
    pthread_mutex_lock(&r->mu);
    struct rt_state *s = r->cur;
    retry_after = s->cfg->retry_after_s;
    long flow = router_classify(s->cfg, &ri);
    if (flow < 0) {
        verdict = 404;
    } else {
        q->st = s->st[flow];
        q->st->arrivals++;
        const struct router_app *app = &s->cfg->apps[s->cfg->flows[flow].app];
        long open = 0;
        if (q->tunnel) { /* tunnels are bounded per application */
            for (size_t f = 0; f < s->cfg->nflows; f++)
                if (s->cfg->flows[f].app == s->cfg->flows[flow].app)
                    open += s->st[f]->tunnels;
            q->tunnel_idle_ms = app->tunnel_idle_ms;
        }
        if (q->tunnel && open >= (long)app->max_tunnels) {
            q->st->rejected++;
            verdict = 529; /* 503, "too many tunnels" */
        } else if (router_sched_enqueue(s->sched, &q->item, (size_t)flow, q->t_arrive)) {
            q->st->rejected++;
            verdict = 503;
        } else {
            q->st->qlen++;
            q->state = Q_QUEUED;
            if (q->tunnel) {
                q->st->tunnels++;
                q->tunnel_counted = 1;
            }
            rt_dispatch_locked(r, q->t_arrive, &wake);
        }
    }
    pthread_mutex_unlock(&r->mu);
    rt_wake_workers(r, wake, q->w);
    if (verdict == 404) {
        rt_resp_local(q, 404, NULL, "no application matches this host and path");
        req_complete(q);
    } else if (verdict == 503 || verdict == 529) {
        char ra[64];
        snprintf(ra, sizeof ra, "Retry-After: %u\r\n", retry_after);
        rt_resp_local(q, 503, ra,
                      verdict == 529 ? "too many tunnels for this application, retry later"
                                     : "flow queue full, retry later");
        req_complete(q);
    }
}

/* The client is gone: queued requests leave the queue, requests upstream
 * finish and are then dropped. */
void req_abandon(struct rt_req *q)
{
    q->conn = NULL;
    if (q->state == Q_QUEUED) {
        struct router *r = q->w->r;
        int was = 0;
        pthread_mutex_lock(&r->mu);
        if (q->item.queued) {
            router_sched_remove(r->cur->sched, &q->item);
            q->st->qlen--;
            q->st->cancelled++;
            was = 1;
        }
        pthread_mutex_unlock(&r->mu);
        if (was)
            req_free(q);
        /* else: it is on this worker's ready list; rt_handle_ready frees it. */
    } else if (q->state == Q_DONE || q->state == Q_NEW) {
        req_free(q);
    } else if (q->state == Q_TUNNEL) {
        rt_tunnel_end(q);
    } else if (q->state == Q_UPSTREAM || q->state == Q_STREAM) {
        up_abandon(q); /* streamed: cut now; else freed when it finishes */
    }
    /* Q_READY: freed by rt_handle_ready. */
}

/* q's body broke a limit (or its framing) after q was submitted: take q
 * back from wherever it is - its flow's queue, the ready list, an upstream
 * connection that has the head and part of the body (closed, its slot
 * released) - and answer `status` locally. why: a static string. Returns -1
 * when no answer can be given any more (the response head already went to
 * the client): the caller cuts the client's stream. */
int req_refuse(struct rt_req *q, int status, const char *why)
{
    q->body_pending = 0;
    switch (q->state) {
    case Q_QUEUED: {
        struct router *r = q->w->r;
        int was = 0;
        pthread_mutex_lock(&r->mu);
        if (q->item.queued) {
            router_sched_remove(r->cur->sched, &q->item);
            q->st->qlen--;
            q->st->rejected++;
            was = 1;
        }
        pthread_mutex_unlock(&r->mu);
        if (!was) { /* admitted meanwhile: on this worker's ready list */
            q->refuse = status;
            q->refuse_why = why;
            return 0;
        }
        break;
    }
    case Q_READY: /* rt_handle_ready answers it */
        q->refuse = status;
        q->refuse_why = why;
        return 0;
    case Q_UPSTREAM:
    case Q_STREAM:
        if (q->streaming)
            return -1;
        if (q->up) { /* the upstream has a partial request: it cannot be reused */
            struct rt_upconn *u = q->up;
            u->req = NULL;
            q->up = NULL;
            up_close(u);
        }
        rt_release_slot(q, 0, 0);
        break;
    case Q_DONE: /* its answer is already here; it goes out, then the close */
        return 0;
    default:
        return -1;
    }
    rt_resp_local(q, status, NULL, why);
    req_complete(q);
    return 0;
}

/* ------------------------------------------------------------ request bodies */

/* Body bytes from the client (h1 sink or h2 DATA): frame them for the
 * upstream, hand them on, and stop reading the client when RT_WINDOW bytes
 * wait for the upstream. */
int rt_body_append(struct rt_req *q, const char *d, size_t n)
{
    if (!q->body_pending || n == 0)
        return 0;
    if (q->state == Q_DONE) /* answered already (early response, 503, ...): dropped */
        return 0;
    if (q->body_chunked) {
        char hx[24];
        int hl = snprintf(hx, sizeof hx, "%zx\r\n", n);
        rt_buf_add(&q->upbytes, &q->uplen, &q->upcap, hx, (size_t)hl);
    }
    rt_buf_add(&q->upbytes, &q->uplen, &q->upcap, d, n);
    if (q->body_chunked)
        rt_buf_add(&q->upbytes, &q->uplen, &q->upcap, "\r\n", 2);
    q->body_bytes += n;
    if (up_pump(q))
        return -1;
    rt_body_check_pause(q);
    return 0;
}

void rt_body_end(struct rt_req *q)
{
    if (!q->body_pending)
        return;
    if (q->body_chunked)
        rt_buf_add(&q->upbytes, &q->uplen, &q->upcap, "0\r\n\r\n", 5);
    q->body_pending = 0;
    if (up_pump(q) == 0)
        rt_body_resume(q);
}

void rt_body_check_pause(struct rt_req *q)
{
    struct rt_conn *c = q->conn;
    if (!c || c->closing || up_pending(q) <= RT_WINDOW)
        return;
    if (c->proto == P_H1 && !c->bpaused) {
        c->bpaused = 1;
        uv_read_stop((uv_stream_t *)&c->tcp);
    }
    /* h2: the bytes are not given back to the client's window yet. */
}

void rt_body_resume(struct rt_req *q)
{
    struct rt_conn *c = q->conn;
    if (!c || c->closing || up_pending(q) > RT_WINDOW / 2)
        return;
    if (c->proto == P_H2) {
        h2_consume(c, q);
    } else if (c->bpaused) {
        c->bpaused = 0;
        if (!c->paused)
            uv_read_start((uv_stream_t *)&c->tcp, rt_worker_alloc, conn_read);
    }
}

/* Pass the response on as it arrives. */
void rt_resp_progress(struct rt_req *q)
{
    struct rt_conn *c = q->conn;
    if (!c)
        return;
    if (c->proto == P_H2)
        h2_respond(c, q);
    else
        conn_flush(c);
}
