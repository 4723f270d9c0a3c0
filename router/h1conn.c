/* h1conn.c - client connections: accept, protocol detection, HTTP/1.1
 * (keep-alive, pipelining, h2c upgrade), timeouts, response writing. */
#include <strings.h>

#include "gw.h"

/* ------------------------------------------------------------ HTTP/1 front end */


static void conn_closed(uv_handle_t *h)
{
    struct rt_conn *c = h->data;
    if (--c->handles == 0) {
        if (c->dirty) { /* normally flushed long before; never leave a dangling entry */
            struct rt_conn **pp = &c->w->dirty;
            while (*pp && *pp != c)
                pp = &(*pp)->dnext;
            if (*pp)
                *pp = c->dnext;
        }
        router_h1req_free(c->h1);
        rt_tls_conn_free(c);
        if (c->counted)
            atomic_fetch_sub(&c->w->r->nconns, 1);
        if (c->h2)
            nghttp2_session_del(c->h2);
        while (c->streams)
            h2_stream_free(c, c->streams);
        free(c);
    }
}

void conn_close(struct rt_conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    c->body_q = NULL;
    struct rt_req *q = c->rhead;
    while (q) {
        struct rt_req *n = q->cnext;
        q->cprev = q->cnext = NULL;
        req_abandon(q);
        q = n;
    }
    c->rhead = c->rtail = NULL;
    c->nreq = 0;
    uv_close((uv_handle_t *)&c->tcp, conn_closed);
    uv_close((uv_handle_t *)&c->timer, conn_closed);
}

static void conn_timeout(uv_timer_t *t);

static void conn_shut(uv_shutdown_t *sr, int status)
{
    struct rt_conn *c = sr->data;
    /* Lingering: the client's EOF or the timer closes it. */
    if (!c->linger || status < 0)
        conn_close(c);
}

/* Close once what was written has left: uv_close alone would drop the
 * queued writes (the end of a large response). */
void conn_end(struct rt_conn *c)
{
    if (c->closing || c->ending)
        return;
    if (!c->linger && uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) == 0) {
        conn_close(c);
        return;
    }
    c->ending = 1;
    rt_tls_close_notify(c);
    unsigned ms = c->w->r->o.idle_timeout_ms;
    if (c->linger) {
        /* After an error answer the client may still be sending (a body we
         * refused): closing with its bytes unread would reset the
         * connection, and the reset can destroy the answer before the
         * client reads it. Send FIN, drop what arrives, close on its EOF
         * or after RT_LINGER_MS. */
        c->paused = c->bpaused = 0;
        uv_read_start((uv_stream_t *)&c->tcp, rt_worker_alloc, conn_read);
        if (ms > RT_LINGER_MS)
            ms = RT_LINGER_MS;
    } else {
        uv_read_stop((uv_stream_t *)&c->tcp);
    }
    c->sreq.data = c;
    if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, conn_shut)) {
        conn_close(c);
        return;
    }
    /* A client that never reads does not keep it forever. */
    conn_arm(c, T_IDLE, ms);
}


/* Timers are lazy: a keep-alive connection switches between "idle" and "a
 * request in flight" on every request, and moving a libuv timer each time
 * costs two heap operations per request. conn_arm only records the new
 * deadline when the running timer is due no later; a timer that fires
 * early re-arms for what is left, one that fires with nothing armed
 * (T_NONE) does nothing. */
void conn_arm(struct rt_conn *c, int mode, unsigned ms)
{
    c->timer_mode = mode;
    c->deadline = uv_now(&c->w->loop) + ms;
    if (uv_is_active((uv_handle_t *)&c->timer) && uv_timer_get_due_in(&c->timer) <= ms)
        return;
    uv_timer_start(&c->timer, conn_timeout, ms, 0);
}

static void conn_timeout(uv_timer_t *t)
{
    struct rt_conn *c = t->data;
    if (c->timer_mode == T_NONE)
        return;
    uint64_t now = uv_now(&c->w->loop);
    if (now < c->deadline) {
        uv_timer_start(&c->timer, conn_timeout, c->deadline - now, 0);
        return;
    }
    if (c->timer_mode == T_STALL)
        wlm_debug("router", "client stopped reading", "peer=%s idle_ms=%u", c->peer,
                  c->w->r->o.idle_timeout_ms);
    if (c->timer_mode == T_HEADER && c->nreq == 0 && c->proto != P_H2) {
        static const char msg[] = "HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n"
                                  "Connection: close\r\n\r\n";
        conn_write(c, msg, sizeof msg - 1);
    }
    conn_close(c);
}

/* A client that stops reading a streamed response holds its upstream
 * paused; after the idle timeout without progress the connection closes. */
void conn_stall(struct rt_conn *c, int stalled)
{
    if (c->closing || c->ending)
        return;
    if (stalled && c->timer_mode == T_NONE)
        conn_arm(c, T_STALL, c->w->r->o.idle_timeout_ms);
    else if (!stalled && c->timer_mode == T_STALL)
        c->timer_mode = T_NONE;
}

static void conn_timers(struct rt_conn *c)
{
    struct router *r = c->w->r;
    if (c->closing || c->ending || c->timer_mode == T_HANDSHAKE || c->tunnel_q)
        return;
    /* A new connection must send its first request head within the header
     * timeout too, so silent connections cannot pin memory for the idle time. */
    if (c->partial || c->proto == P_DETECT) {
        if (c->timer_mode != T_HEADER) /* not extended by trickling bytes */
            conn_arm(c, T_HEADER, r->o.header_timeout_ms);
    } else if (c->nreq == 0) {
        conn_arm(c, T_IDLE, r->o.idle_timeout_ms);
    } else {
        c->timer_mode = T_NONE;
    }
}

/* q's response went out: forget it. A request whose body is still
 * arriving was answered early: the rest of its body is not read, the
 * connection closes. */
static void h1_unlink_done(struct rt_conn *c, struct rt_req *q)
{
    if (c->body_q == q) {
        c->body_q = NULL;
        c->want_close = 1;
        c->linger = 1;
        q->keep_alive = 0;
    }
    conn_unlink(c, q);
    req_free(q);
}

/* "HTTP/1.1 <status> <reason>\r\n" into out (64 bytes); returns its length. */
static size_t h1_status_line(int status, char *out)
{
    const char *r = rt_reason(status);
    size_t rl = strlen(r);
    if (rl > 40)
        rl = 40;
    memcpy(out, "HTTP/1.1 ", 9);
    unsigned s = (unsigned)status % 1000;
    out[9] = (char)('0' + s / 100);
    out[10] = (char)('0' + s / 10 % 10);
    out[11] = (char)('0' + s % 10);
    out[12] = ' ';
    memcpy(out + 13, r, rl);
    memcpy(out + 13 + rl, "\r\n", 2);
    return 15 + rl;
}

/* The framing headers that end q's response head (Content-Length or
 * chunked, Connection: close, the blank line) into out (96 bytes). clen as
 * for h1_head. */
static size_t h1_tail(const struct rt_req *q, char *out, long long clen, int close)
{
    size_t o = 0;
    int st = q->resp.status;
    if (!(st == 204 || st == 304 || st / 100 == 1)) {
        if (clen >= 0) {
            char t[24];
            int i = 24;
            unsigned long long v = (unsigned long long)clen;
            do
                t[--i] = (char)('0' + v % 10);
            while ((v /= 10));
            memcpy(out + o, "Content-Length: ", 16);
            o += 16;
            memcpy(out + o, t + i, (size_t)(24 - i));
            o += (size_t)(24 - i);
            memcpy(out + o, "\r\n", 2);
            o += 2;
        } else if (q->chunked_out) {
            memcpy(out + o, "Transfer-Encoding: chunked\r\n", 28);
            o += 28;
        }
    }
    if (close) {
        memcpy(out + o, "Connection: close\r\n", 19);
        o += 19;
    }
    memcpy(out + o, "\r\n", 2);
    return o + 2;
}

/* Status line and headers of q's response into b. clen < 0: the body is
 * chunk-encoded (or close-delimited for an HTTP/1.0 client). */
static void h1_head(struct rt_req *q, char **b, size_t *len, size_t *cap, long long clen,
                    int close)
{
    const struct rt_resp *rs = &q->resp;
    rt_buf_add(b, len, cap, "HTTP/1.1 ", 9);
    rt_buf_u(b, len, cap, (unsigned)rs->status);
    rt_buf_add(b, len, cap, " ", 1);
    rt_buf_str(b, len, cap, rt_reason(rs->status));
    rt_buf_add(b, len, cap, "\r\n", 2);
    rt_buf_add(b, len, cap, rs->hb ? rs->hb : "", rs->hlen);
    if (!(rs->status == 204 || rs->status == 304 || rs->status / 100 == 1)) {
        if (clen >= 0) {
            rt_buf_add(b, len, cap, "Content-Length: ", 16);
            rt_buf_u(b, len, cap, (unsigned long long)clen);
            rt_buf_add(b, len, cap, "\r\n", 2);
        } else if (q->chunked_out) {
            rt_buf_add(b, len, cap, "Transfer-Encoding: chunked\r\n", 28);
        }
    }
    if (close)
        rt_buf_add(b, len, cap, "Connection: close\r\n", 19);
    rt_buf_add(b, len, cap, "\r\n", 2);
}

/* Pass on what q's streamed response has so far. Returns 0 while q is
 * still streaming, 1 when it is finished (unlinked and freed), -1 when the
 * connection was closed. */
static int h1_stream(struct rt_conn *c, struct rt_req *q)
{
    char *b = NULL;
    size_t len = 0, cap = 0;
    if (q->aborted) { /* the upstream broke after the head: the client sees a cut */
        conn_close(c);
        return -1;
    }
    if (!q->streaming) {
        q->streaming = 1;
        long long clen = q->resp_clen;
        if (clen < 0 && !q->http10)
            q->chunked_out = 1;
        else if (clen < 0)
            q->keep_alive = 0; /* HTTP/1.0: the end of the body is the close */
        h1_head(q, &b, &len, &cap, clen, !q->keep_alive || c->want_close || c->body_q == q);
    }
    size_t avail = q->resp.blen - q->boff;
    if (avail) {
        if (q->chunked_out) {
            char hx[24];
            int hl = snprintf(hx, sizeof hx, "%zx\r\n", avail);
            rt_buf_add(&b, &len, &cap, hx, (size_t)hl);
        }
        if (!b) { /* body only: no copy */
            if (conn_write(c, q->resp.body + q->boff, avail)) {
                conn_close(c);
                return -1;
            }
        } else {
            rt_buf_add(&b, &len, &cap, q->resp.body + q->boff, avail);
        }
        if (q->chunked_out)
            rt_buf_add(&b, &len, &cap, "\r\n", 2);
        q->bytes_out += avail;
        q->boff = q->resp.blen = 0;
    }
    int done = q->state == Q_DONE;
    if (done && q->chunked_out)
        rt_buf_add(&b, &len, &cap, "0\r\n\r\n", 5);
    if (len && conn_write(c, b, len)) {
        free(b);
        conn_close(c);
        return -1;
    }
    free(b);
    if (!done) {
        rt_up_resume(q);
        return 0;
    }
    int close = !q->keep_alive || c->want_close || c->body_q == q;
    h1_unlink_done(c, q);
    if (close) {
        conn_end(c);
        return -1;
    }
    return 1;
}

/* Send responses in request order (pipelining): whole ones at once, the
 * head-of-line one as it streams. */
void conn_flush(struct rt_conn *c)
{
    while (c->rhead && !c->closing && !c->ending) {
        struct rt_req *q = c->rhead;
        if (q->state == Q_STREAM || (q->state == Q_DONE && q->streaming)) {
            if (h1_stream(c, q) <= 0)
                break;
            continue;
        }
        if (q->state != Q_DONE)
            break;
        int close = !q->keep_alive || c->want_close || c->body_q == q;
        const struct rt_resp *rs = &q->resp;
        /* One writev: status line, the headers as received, the framing
         * headers, the body - no copy into one buffer. HEAD: the length the
         * upstream announced (none when it gave none). */
        char st[64], tail[96];
        size_t sl = h1_status_line(rs->status, st);
        size_t tl = h1_tail(q, tail, q->head ? q->resp_clen : (long long)rs->blen, close);
        uv_buf_t v[4] = {uv_buf_init(st, (unsigned)sl),
                         uv_buf_init(rs->hb ? rs->hb : st, rs->hb ? (unsigned)rs->hlen : 0),
                         uv_buf_init(tail, (unsigned)tl),
                         uv_buf_init(rs->body, !q->head && rs->blen ? (unsigned)rs->blen : 0)};
        int rc = conn_writev(c, v, 4);
        q->bytes_out = q->head ? 0 : rs->blen;
        h1_unlink_done(c, q);
        if (rc) {
            conn_close(c);
            return;
        }
        if (close) {
            conn_end(c);
            return;
        }
    }
    if (c->closing || c->ending)
        return;
    if (c->paused && c->nreq < RT_MAX_PIPELINE / 2) {
        c->paused = 0;
        if (!c->bpaused)
            uv_read_start((uv_stream_t *)&c->tcp, rt_worker_alloc, conn_read);
    }
    conn_timers(c);
}

static void h1_error(struct rt_conn *c, int status, const char *why)
{
    /* Answer after the responses already owed, then close. */
    struct rt_req *q = req_new(c);
    if (!q) {
        conn_close(c);
        return;
    }
    c->want_close = 1;
    rt_resp_local(q, status, NULL, why);
    q->state = Q_DONE;
    conn_flush(c);
}


/* streamed: the head of a request whose body follows through h1_sink. */
static void h1_request(struct rt_conn *c, const struct router_h1view *v, int streamed)
{
    struct rt_req *q = req_new(c);
    if (!q) {
        conn_close(c);
        return;
    }
    q->keep_alive = v->keep_alive && !c->want_close;
    q->http10 = v->http_major == 1 && v->http_minor == 0;
    if (v->upgrade && c->nreq == 1 && !c->admin && !streamed) {
        /* An Upgrade with nothing before it on the connection: a tunnel if
         * the upstream agrees (101); else an ordinary response, then close. */
        const struct router_hdr *up = router_hdr_find(v->headers, v->nheaders, "upgrade");
        if (up && up->value_len < sizeof q->upgrade) {
            q->tunnel = 1;
            q->keep_alive = 0;
            memcpy(q->upgrade, up->value, up->value_len);
            q->upgrade[up->value_len] = 0;
        }
    }
    const struct router_hdr *hh = router_hdr_find(v->headers, v->nheaders, "host");
    if (c->admin) {
        const char *qm = memchr(v->url, '?', v->url_len);
        size_t pl = qm ? (size_t)(qm - v->url) : v->url_len;
        admin_handle(q, v->method, v->url, pl, v->headers, v->nheaders, v->body, v->body_len);
        return;
    }
    /* Absolute-form target (RFC 9112 3.2.2): its authority replaces Host and
     * the upstream gets the origin-form path. */
    const char *target = v->url, *auth = NULL;
    size_t tlen = v->url_len, alen = 0;
    if (tlen > 7 && strncasecmp(target, "http://", 7) == 0) {
        const char *a = target + 7, *end = target + tlen;
        const char *slash = memchr(a, '/', (size_t)(end - a));
        auth = a;
        alen = (size_t)((slash ? slash : end) - a);
        target = slash ? slash : "/";
        tlen = slash ? (size_t)(end - slash) : 1;
    }
    long long slen = !streamed ? RT_BODY_WHOLE : v->chunked ? RT_BODY_CHUNKED : v->content_length;
    if (rt_build_upstream(q, v->method, target, tlen, auth, alen, v->headers, v->nheaders,
                          v->body, v->body_len, slen, c->peer)) {
        rt_resp_local(q, 500, NULL, "out of memory");
        q->state = Q_DONE;
        conn_flush(c);
        return;
    }
    if (auth)
        req_submit(q, auth, alen, target, tlen, v->headers, v->nheaders);
    else
        req_submit(q, hh ? hh->value : NULL, hh ? hh->value_len : 0, target, tlen, v->headers,
                   v->nheaders);
}

static int b64url_decode(const char *in, size_t n, unsigned char *out, size_t cap)
{
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)in[i], v;
        if (c >= 'A' && c <= 'Z') v = c - 'A';
        else if (c >= 'a' && c <= 'z') v = c - 'a' + 26;
        else if (c >= '0' && c <= '9') v = c - '0' + 52;
        else if (c == '-' || c == '+') v = 62;
        else if (c == '_' || c == '/') v = 63;
        else if (c == '=') break;
        else return -1;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= cap)
                return -1;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    return (int)o;
}

/* Returns the number of bytes consumed; stops when the connection switched
 * to h2 (the caller feeds the rest to nghttp2) or closed. */
static size_t h1_feed(struct rt_conn *c, const char *d, size_t n)
{
    size_t off = 0;
    while (off < n && !c->closing && !c->ending && c->proto == P_H1 && !c->want_close) {
        size_t used;
        enum router_h1_event ev = router_h1req_feed(c->h1, d + off, n - off, &used);
        off += used;
        if (ev == ROUTER_H1_NEED_MORE) {
            c->partial = c->body_q == NULL; /* a body in flight is not a slow head */
            break;
        }
        if (ev == ROUTER_H1_ERROR) {
            if (c->body_q) {
                /* The body broke --max-body-bytes (or its chunk framing)
                 * after the head was submitted: the request is taken back
                 * (from its queue or its upstream) and answered here, then
                 * the connection closes; cut only when the response
                 * already started. */
                struct rt_req *q = c->body_q;
                c->body_q = NULL;
                c->want_close = 1;
                c->linger = 1;
                q->keep_alive = 0;
                if (req_refuse(q, router_h1req_status(c->h1), router_h1req_reason(c->h1)))
                    conn_close(c);
                return n;
            }
            c->linger = 1;
            h1_error(c, router_h1req_status(c->h1), router_h1req_reason(c->h1));
            return n;
        }
        c->partial = 0;
        struct router_h1view v;
        router_h1req_view(c->h1, &v);
        if (ev == ROUTER_H1_HEAD) {
            /* The body streams: the request goes to the dispatcher now. A
             * client waiting for "100 Continue" gets it at once when nothing
             * is owed before it (the body is read into a bounded window). */
            const struct router_hdr *ex = router_hdr_find(v.headers, v.nheaders, "expect");
            if (ex && c->nreq == 0 && ex->value_len == 12 &&
                strncasecmp(ex->value, "100-continue", 12) == 0) {
                static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
                conn_write(c, cont, sizeof cont - 1);
            }
            h1_request(c, &v, 1);
            if (!c->closing && c->rtail && c->rtail->body_pending && c->rtail->state != Q_DONE)
                c->body_q = c->rtail;
            continue;
        }
        if (c->body_q || router_h1req_streamed(c->h1)) {
            /* End of a streamed body (its request may already be answered). */
            struct rt_req *q = c->body_q;
            c->body_q = NULL;
            if (q)
                rt_body_end(q);
            if (!c->closing)
                router_h1req_reset(c->h1);
            continue;
        }
        if (v.upgrade_h2c && c->nreq == 0 && v.body_len == 0 && !c->admin) {
            const struct router_hdr *sh = router_hdr_find(v.headers, v.nheaders, "http2-settings");
            unsigned char settings[512];
            int sl = b64url_decode(sh->value, sh->value_len, settings, sizeof settings);
            if (sl >= 0) {
                static const char sw[] = "HTTP/1.1 101 Switching Protocols\r\n"
                                         "Connection: Upgrade\r\nUpgrade: h2c\r\n\r\n";
                conn_write(c, sw, sizeof sw - 1);
                struct rt_req *q = req_new(c);
                if (!q || h2_start(c, (const char *)settings, (size_t)sl, q,
                                   strcmp(v.method, "HEAD") == 0)) {
                    conn_close(c);
                    return n;
                }
                q->stream_id = 1;
                q->keep_alive = 1;
                const struct router_hdr *hh = router_hdr_find(v.headers, v.nheaders, "host");
                if (rt_build_upstream(q, v.method, v.url, v.url_len, NULL, 0, v.headers,
                                      v.nheaders, v.body, v.body_len, RT_BODY_WHOLE, c->peer)) {
                    conn_close(c);
                    return n;
                }
                req_submit(q, hh ? hh->value : NULL, hh ? hh->value_len : 0, v.url, v.url_len,
                           v.headers, v.nheaders);
                router_h1req_reset(c->h1);
                return off;
            }
        }
        h1_request(c, &v, 0);
        if (!c->closing && c->rtail && c->rtail->tunnel && c->rtail->state != Q_DONE) {
            /* Bytes after an Upgrade head belong to the tunnel: they go
             * upstream behind the head; nothing more is read until the
             * upstream has answered. */
            struct rt_req *q = c->rtail;
            rt_buf_add(&q->upbytes, &q->uplen, &q->upcap, d + off, n - off);
            c->upgrading = 1;
            uv_read_stop((uv_stream_t *)&c->tcp);
            router_h1req_reset(c->h1);
            return n;
        }
        if (!c->closing)
            router_h1req_reset(c->h1);
        if (c->nreq >= RT_MAX_PIPELINE && !c->closing) {
            /* Back-pressure: stop reading until responses drain. The rest
             * of this buffer is still processed (it is already here). */
            if (!c->paused) {
                c->paused = 1;
                uv_read_stop((uv_stream_t *)&c->tcp);
            }
        }
    }
    return off;
}

/* Request body bytes, as the reader decodes them. */
static void h1_sink(void *ud, const char *d, size_t n)
{
    struct rt_conn *c = ud;
    if (c->body_q)
        rt_body_append(c->body_q, d, n);
}

/* A socket's write queue went below RT_WINDOW / 2: the side that was held
 * back may go on. */
void rt_stream_drained(uv_stream_t *s)
{
    /* Both owners start with their uv_tcp_t followed by a magic word. */
    unsigned magic = *(unsigned *)((char *)s + offsetof(struct rt_conn, magic));
    if (magic == RT_MAGIC_UP) {
        struct rt_upconn *u = (struct rt_upconn *)s;
        if (!u->closing)
            up_drained(u);
        return;
    }
    if (magic != RT_MAGIC_CONN)
        return;
    struct rt_conn *c = (struct rt_conn *)s;
    if (c->closing || c->ending)
        return;
    struct rt_worker *w = c->w;
    if (c->tunnel_q) {
        rt_tunnel_client_drained(c);
    } else if (c->proto == P_H2) {
        if (c->h2_blocked) {
            c->h2_blocked = 0;
            h2_flush(c);
        }
        for (struct rt_req *q = c->rhead; q && !c->closing; q = q->cnext)
            rt_up_resume(q);
    } else {
        conn_flush(c);
    }
    rt_maybe_drain(w);
}

static const char h2_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

static void conn_read_(struct rt_conn *c, ssize_t n, const uv_buf_t *b);

void conn_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct rt_conn *c = s->data;
    struct rt_worker *w = c->w;
    conn_read_(c, n, b);
    rt_maybe_drain(w);
}

/* Plaintext from the client (straight from the socket, or decrypted):
 * protocol detection, then the HTTP/1.1 reader or the h2 session. Returns
 * non-zero when the connection closed. */
int conn_process(struct rt_conn *c, const char *d, size_t len)
{
    if (c->closing || c->ending) /* closing after its last response: nothing more is read */
        return 1;
    if (c->tunnel_q) {
        rt_tunnel_from_client(c->tunnel_q, d, len);
        return c->closing;
    }
    if (c->upgrading) { /* decrypted in the same batch as the Upgrade head */
        struct rt_req *q = c->rtail;
        if (q && q->tunnel && q->state != Q_DONE)
            rt_buf_add(&q->upbytes, &q->uplen, &q->upcap, d, len);
        return 0;
    }
    if (c->proto == P_DETECT) {
        size_t take = 24 - c->prelen < len ? 24 - c->prelen : len;
        memcpy(c->pre + c->prelen, d, take);
        c->prelen += take;
        if (memcmp(c->pre, h2_preface, c->prelen) != 0 || c->admin) {
            c->proto = P_H1;
            size_t pl = c->prelen;
            c->prelen = 0;
            size_t used = h1_feed(c, c->pre, pl);
            (void)used; /* < pl only if it switched to h2: impossible in 24 bytes */
            d += take;
            len -= take;
        } else if (c->prelen == 24) {
            c->proto = P_H2;
            if (h2_start(c, NULL, 0, NULL, 0) || h2_feed(c, c->pre, 24)) {
                conn_close(c);
                return 1;
            }
            d += take;
            len -= take;
        } else {
            return 0;
        }
    }
    if (c->proto == P_H1 && len) {
        size_t used = h1_feed(c, d, len);
        d += used;
        len -= used;
    }
    if (c->proto == P_H2 && len && !c->closing) {
        if (h2_feed(c, d, len)) {
            conn_close(c);
            return 1;
        }
    }
    return c->closing || c->ending;
}

static void conn_read_(struct rt_conn *c, ssize_t n, const uv_buf_t *b)
{
    if (n == 0 || c->closing)
        return;
    if (n < 0) {
        conn_close(c);
        return;
    }
    if (c->ssl) {
        if (rt_tls_input(c, b->base, (size_t)n)) {
            conn_close(c);
            return;
        }
    } else if (conn_process(c, b->base, (size_t)n)) {
        return;
    }
    if (c->closing)
        return;
    if (c->proto == P_H2)
        h2_flush(c);
    conn_timers(c);
}

/* All bytes to the client go through here (encrypted on TLS connections). */
int conn_write(struct rt_conn *c, const char *d, size_t n)
{
    if (c->ssl)
        return rt_tls_write(c, d, n);
    return rt_stream_write((uv_stream_t *)&c->tcp, d, n);
}

/* Several pieces as one write: writev in plaintext; on TLS gathered first,
 * so they go out in one record rather than one per piece. */
int conn_writev(struct rt_conn *c, const uv_buf_t *bufs, unsigned nb)
{
    if (!c->ssl)
        return rt_stream_writev((uv_stream_t *)&c->tcp, bufs, nb);
    char *b = NULL;
    size_t len = 0, cap = 0;
    for (unsigned i = 0; i < nb; i++)
        if (rt_buf_add(&b, &len, &cap, bufs[i].base, bufs[i].len)) {
            free(b);
            return UV_ENOMEM;
        }
    int rc = conn_write(c, b, len);
    free(b);
    return rc;
}

/* TLS is up: the connection now waits for its first request like a new
 * plaintext one. */
void conn_handshake_done(struct rt_conn *c)
{
    c->timer_mode = T_NONE;
    if (c->proto != P_H2)
        c->partial = 1; /* the header timeout starts now */
}

void rt_on_accept(uv_stream_t *ls, int status)
{
    struct rt_worker *w = ls->loop->data;
    if (status < 0)
        return;
    struct rt_conn *c = calloc(1, sizeof *c);
    if (!c)
        return;
    c->magic = RT_MAGIC_CONN;
    c->w = w;
    c->admin = ls == (uv_stream_t *)&w->admin;
    int tls = ls == (uv_stream_t *)&w->tls_listener || (c->admin && w->r->o.admin_tls);
    c->h1 = router_h1req_new(w->r->o.max_header_bytes, w->r->o.max_body_bytes);
    if (c->h1 && !c->admin) /* admin bodies (configs) are read whole */
        router_h1req_set_sink(c->h1, h1_sink, c);
    uv_tcp_init(&w->loop, &c->tcp);
    uv_timer_init(&w->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->handles = 2;
    if (!c->h1 || uv_accept(ls, (uv_stream_t *)&c->tcp)) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    struct sockaddr_storage ss;
    int sl = sizeof ss;
    snprintf(c->peer, sizeof c->peer, "unknown");
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET)
            uv_ip4_name((struct sockaddr_in *)&ss, c->peer, sizeof c->peer);
        else if (ss.ss_family == AF_INET6)
            uv_ip6_name((struct sockaddr_in6 *)&ss, c->peer, sizeof c->peer);
    }
    c->proto = P_DETECT;
    if (!c->admin) {
        c->counted = 1;
        atomic_fetch_add(&w->r->nconns, 1);
    }
    if (tls) {
        struct router *r = w->r;
        pthread_mutex_lock(&r->tls_mu);
        struct rt_tls_store *st = rt_tls_store_ref(r->tls);
        pthread_mutex_unlock(&r->tls_mu);
        int rc = st ? rt_tls_conn_start(c, st) : -1;
        rt_tls_store_unref(st);
        if (rc) {
            conn_close(c);
            return;
        }
        uv_read_start((uv_stream_t *)&c->tcp, rt_worker_alloc, conn_read);
        conn_arm(c, T_HANDSHAKE, r->o.tls_handshake_timeout_ms);
        return;
    }
    uv_read_start((uv_stream_t *)&c->tcp, rt_worker_alloc, conn_read);
    conn_timers(c);
}
