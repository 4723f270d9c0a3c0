/* h2session.c - HTTP/2 server sessions (nghttp2): streams, request assembly,
 * responses, batched frame output.
 *
 * Flow control follows consumption: request DATA is given back to the
 * client's window (nghttp2_session_consume) only once the upstream has taken
 * it, so a stream holds at most its window (RT_WINDOW) when the upstream is
 * slow; responses are pulled by nghttp2 only while the socket's queue is under
 * RT_WINDOW, so a slow reader stops the upstream read (up_check_pause). */
#include <strings.h>

#include "gw.h"

/* Check phase (after all I/O callbacks of a loop iteration): send the h2
 * frames produced by every response of the iteration, one write per
 * connection instead of one per response. */
static void rt_flush_dirty(uv_check_t *h)
{
    struct rt_worker *w = h->data;
    while (w->dirty) {
        struct rt_conn *c = w->dirty;
        w->dirty = c->dnext;
        c->dnext = NULL;
        c->dirty = 0;
        h2_flush(c);
    }
    rt_maybe_drain(w);
    if (!w->dirty)
        uv_check_stop(&w->flush);
}

/* ------------------------------------------------------------ HTTP/2 front end */


static struct h2_stream *h2_stream_new(struct rt_conn *c)
{
    struct h2_stream *st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    st->hcap = 512; /* a typical request head in one allocation */
    st->hb = malloc(st->hcap);
    if (!st->hb)
        st->hcap = 0;
    st->chk.clen = -1;
    st->next = c->streams;
    if (c->streams)
        c->streams->prev = st;
    c->streams = st;
    return st;
}

void h2_stream_free(struct rt_conn *c, struct h2_stream *st)
{
    if (st->prev)
        st->prev->next = st->next;
    else
        c->streams = st->next;
    if (st->next)
        st->next->prev = st->prev;
    free(st->hb);
    free(st->body);
    free(st);
}

static ssize_t h2_send_cb(nghttp2_session *s, const uint8_t *data, size_t len, int flags,
                          void *ud)
{
    struct rt_conn *c = ud;
    if (c->closing)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    if (conn_write(c, (const char *)data, len))
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    return (ssize_t)len;
}

static int h2_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    struct h2_stream *st = h2_stream_new(ud);
    if (!st)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    nghttp2_session_set_stream_user_data(s, f->hd.stream_id, st);
    return 0;
}

static int h2_on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                        size_t nl, const uint8_t *value, size_t vl, uint8_t flags, void *ud)
{
    struct rt_conn *c = ud;
    struct h2_stream *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (!st)
        return 0;
    if (st->q) { /* trailers: dropped; a pseudo-header field there is malformed */
        if (nl && name[0] == ':')
            nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, f->hd.stream_id,
                                      NGHTTP2_PROTOCOL_ERROR);
        return 0;
    }
    if (st->bad)
        return 0;
    st->bad = h2_check_field(&st->chk, name, nl, value, vl);
    if (st->bad)
        return 0;
    if (st->hlen + nl + vl + 2 > c->w->r->o.max_header_bytes) {
        st->too_big = 431;
        return 0;
    }
    /* "name\0value\0", one reservation */
    if (rt_buf_add(&st->hb, &st->hlen, &st->hcap, name, nl + 1) == 0) {
        st->hb[st->hlen - 1] = 0;
        if (rt_buf_add(&st->hb, &st->hlen, &st->hcap, value, vl) == 0)
            st->hlen++; /* rt_buf_add keeps a NUL after the data */
    }
    return 0;
}

static void h2_mark_dirty(struct rt_conn *c)
{
    if (!c->dirty) {
        c->dirty = 1;
        c->dnext = c->w->dirty;
        c->w->dirty = c;
        uv_check_start(&c->w->flush, rt_flush_dirty);
    }
}

/* Give q's received DATA back to the client's flow-control windows. */
void h2_consume(struct rt_conn *c, struct rt_req *q)
{
    if (!q->h2_unconsumed || !c->h2 || c->closing)
        return;
    nghttp2_session_consume(c->h2, q->stream_id, q->h2_unconsumed);
    q->h2_unconsumed = 0;
    h2_mark_dirty(c);
}

static int h2_on_data(nghttp2_session *s, uint8_t flags, int32_t sid, const uint8_t *d, size_t n,
                      void *ud)
{
    struct rt_conn *c = ud;
    struct h2_stream *st = nghttp2_session_get_stream_user_data(s, sid);
    struct rt_req *q = st ? st->q : NULL;
    if (st)
        st->got += n;
    if (st && st->chk.clen >= 0 && st->got > (unsigned long long)st->chk.clen) {
        /* More than its content-length: it must not run into the next
         * request on the upstream connection. */
        nghttp2_session_consume(s, sid, n);
        nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, sid, NGHTTP2_PROTOCOL_ERROR);
        return 0;
    }
    if (!q || q->stream_id != sid || !q->body_pending || q->state == Q_DONE) {
        nghttp2_session_consume(s, sid, n); /* nobody wants it */
        return 0;
    }
    if (q->body_bytes + n > c->w->r->o.max_body_bytes) {
        /* Like HTTP/1.1: the request is taken back (queue or upstream) and
         * answered 413; once the answer is out the stream is reset with
         * NO_ERROR so the client stops sending (RFC 9113 8.1). Only a
         * response already under way is cut instead. */
        nghttp2_session_consume(s, sid, n);
        st->refused = 1;
        if (req_refuse(q, 413, "request body too large"))
            nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, sid, NGHTTP2_CANCEL);
        return 0;
    }
    q->h2_unconsumed += n;
    if (rt_body_append(q, (const char *)d, n) == 0 && up_pending(q) <= RT_WINDOW)
        h2_consume(c, q);
    return 0;
}

/* The head of an h2 request: turn pseudo-headers into the HTTP/1.1 upstream
 * request and submit it like any other; a body (streamed) follows in DATA. */
static void h2_request(struct rt_conn *c, int32_t sid, struct h2_stream *st, int streamed)
{
    struct router_hdr hs[256];
    size_t nh = 0;
    const char *method = NULL, *path = NULL, *auth = NULL;
    size_t pathl = 0, authl = 0;
    const char *k = st->hb, *end = st->hb ? st->hb + st->hlen : NULL;
    while (k && k < end) {
        size_t kl = strlen(k);
        const char *v = k + kl + 1;
        size_t vl = strlen(v);
        if (kl == 7 && memcmp(k, ":method", 7) == 0)
            method = v;
        else if (kl == 5 && memcmp(k, ":path", 5) == 0)
            path = v, pathl = vl;
        else if (kl == 10 && memcmp(k, ":authority", 10) == 0)
            auth = v, authl = vl;
        else if (k[0] != ':' && nh < WLM_ARRAY_LEN(hs))
            hs[nh++] = (struct router_hdr){k, kl, v, vl};
        k = v + vl + 1;
    }
    struct rt_req *q = req_new(c);
    if (!q)
        return;
    q->stream_id = sid;
    q->keep_alive = 1;
    st->q = q;
    /* RFC 9113 8.3.1: Host and :authority must name the same thing; one
     * Host at most; both must be valid authorities. */
    const struct router_hdr *hh = NULL;
    int bad_host = 0;
    const char *why = st->bad ? st->bad : h2_check_head(&st->chk);
    if (!why && !streamed && st->chk.clen > 0)
        why = "content-length announces a body that is not sent";
    for (size_t i = 0; i < nh; i++)
        if (rt_ieq(hs[i].name, hs[i].name_len, "host")) {
            bad_host |= hh != NULL || !router_host_valid(hs[i].value, hs[i].value_len);
            hh = &hs[i];
        }
    if (auth && !router_host_valid(auth, authl))
        bad_host = 1;
    if (auth && hh && (hh->value_len != authl || strncasecmp(hh->value, auth, authl) != 0))
        bad_host = 1;
    if (!auth && hh)
        auth = hh->value, authl = hh->value_len;
    long long slen = RT_BODY_WHOLE;
    if (streamed) {
        const struct router_hdr *cl = router_hdr_find(hs, nh, "content-length");
        slen = RT_BODY_CHUNKED;
        if (cl) {
            char t[24];
            snprintf(t, sizeof t, "%.*s", (int)(cl->value_len < 23 ? cl->value_len : 23),
                     cl->value);
            slen = strtoll(t, NULL, 10); /* nghttp2 checked it is a number */
            if (slen < 0)
                slen = RT_BODY_CHUNKED;
        }
        if (slen > 0 && (unsigned long long)slen > c->w->r->o.max_body_bytes)
            st->too_big = 413, st->refused = 1;
    }
    if (why || st->too_big || !method || !path || bad_host) {
        rt_resp_local(q, why ? 400 : st->too_big ? st->too_big : 400, NULL,
                      why           ? why
                      : bad_host    ? "Host and :authority disagree or are invalid"
                      : st->too_big ? (st->too_big == 413 ? "request body too large"
                                                          : "request header fields too large")
                                    : "bad request");
        req_complete(q);
        return;
    }
    if (rt_build_upstream(q, method, path, pathl, auth, authl, hs, nh, NULL, 0, slen,
                          c->peer)) {
        rt_resp_local(q, 500, NULL, "out of memory");
        req_complete(q);
        return;
    }
    req_submit(q, auth, authl, path, pathl, hs, nh);
}

static int h2_on_frame(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    struct rt_conn *c = ud;
    if (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA)
        return 0;
    struct h2_stream *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (!st)
        return 0;
    int end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    if (!st->q && f->hd.type == NGHTTP2_HEADERS)
        h2_request(c, f->hd.stream_id, st, !end);
    else if (end && st->chk.clen >= 0 && st->got != (unsigned long long)st->chk.clen)
        nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, f->hd.stream_id,
                                  NGHTTP2_PROTOCOL_ERROR); /* shorter than announced */
    else if (st->q && end && st->q->stream_id == f->hd.stream_id)
        rt_body_end(st->q); /* last DATA, or trailers (dropped) */
    return 0;
}

/* A stream answered before the client finished its body: once the answer
 * has ended, tell the client to stop sending. */
static int h2_on_frame_send(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    if (!(f->hd.flags & NGHTTP2_FLAG_END_STREAM) ||
        (f->hd.type != NGHTTP2_DATA && f->hd.type != NGHTTP2_HEADERS))
        return 0;
    struct h2_stream *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (st && st->refused && !nghttp2_session_get_stream_remote_close(s, f->hd.stream_id))
        nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_NO_ERROR);
    return 0;
}

static int h2_on_close(nghttp2_session *s, int32_t sid, uint32_t code, void *ud)
{
    struct rt_conn *c = ud;
    struct h2_stream *st = nghttp2_session_get_stream_user_data(s, sid);
    if (!st)
        return 0;
    nghttp2_session_set_stream_user_data(s, sid, NULL);
    if (st->q && st->q->conn) {
        conn_unlink(c, st->q);
        req_abandon(st->q);
    }
    h2_stream_free(c, st);
    return 0;
}

/* nghttp2 pulls response body bytes: from q's queue; deferred while the
 * upstream has sent nothing new, EOF once the response is complete. */
static ssize_t h2_read_body(nghttp2_session *s, int32_t sid, uint8_t *buf, size_t len,
                            uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    struct rt_req *q = src->ptr;
    if (q->aborted)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets the stream */
    size_t avail = q->resp.blen - q->boff;
    if (!avail) {
        if (q->state == Q_DONE) {
            *flags |= NGHTTP2_DATA_FLAG_EOF;
            return 0;
        }
        q->h2_deferred = 1;
        return NGHTTP2_ERR_DEFERRED;
    }
    size_t n = avail < len ? avail : len;
    memcpy(buf, q->resp.body + q->boff, n);
    q->boff += n;
    q->bytes_out += n;
    if (q->boff == q->resp.blen) {
        q->boff = q->resp.blen = 0;
        if (q->state == Q_DONE)
            *flags |= NGHTTP2_DATA_FLAG_EOF;
    } else if (q->boff >= RT_WINDOW) { /* keep the queue from creeping */
        memmove(q->resp.body, q->resp.body + q->boff, q->resp.blen - q->boff);
        q->resp.blen -= q->boff;
        q->boff = 0;
    }
    rt_up_resume(q);
    return (ssize_t)n;
}

/* v in decimal into out (at least 21 bytes), NUL-terminated: no printf per response. */
static void u64_str(unsigned long long v, char *out)
{
    char t[24];
    int i = 24;
    do
        t[--i] = (char)('0' + v % 10);
    while ((v /= 10));
    memcpy(out, t + i, (size_t)(24 - i));
    out[24 - i] = 0;
}

/* q's response has news (head, body bytes, end, or an upstream failure):
 * submit it the first time, wake its data provider after. */
void h2_respond(struct rt_conn *c, struct rt_req *q)
{
    struct h2_stream *st = nghttp2_session_get_stream_user_data(c->h2, q->stream_id);
    if (!st) { /* stream already closed */
        conn_unlink(c, q);
        req_free(q);
        return;
    }
    if (q->h2_submitted) {
        if (q->aborted) {
            nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, q->stream_id,
                                      NGHTTP2_INTERNAL_ERROR);
        } else if (q->h2_deferred) {
            q->h2_deferred = 0;
            nghttp2_session_resume_data(c->h2, q->stream_id);
        }
        h2_mark_dirty(c);
        return;
    }
    nghttp2_nv nv[128];
    size_t n = 0;
    char status[8], clen[24];
    u64_str((unsigned long long)q->resp.status, status);
    nv[n++] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)status, 7, strlen(status),
                           NGHTTP2_NV_FLAG_NONE};
    /* Header names are lower-cased in place: h2 requires it. */
    char *p = q->resp.hb, *end = q->resp.hb ? q->resp.hb + q->resp.hlen : NULL;
    while (p && p < end && n < WLM_ARRAY_LEN(nv) - 1) {
        char *colon = memchr(p, ':', (size_t)(end - p));
        char *eol = colon ? strstr(colon, "\r\n") : NULL;
        if (!colon || !eol)
            break;
        for (char *x = p; x < colon; x++)
            if (*x >= 'A' && *x <= 'Z')
                *x = (char)(*x + 32);
        char *v = colon + 1;
        while (v < eol && *v == ' ')
            v++;
        /* A value unique to this response (the request id) would only
         * churn the HPACK dynamic tables on both sides: not indexed. */
        uint8_t fl = colon - p == 12 && memcmp(p, "x-request-id", 12) == 0
                         ? NGHTTP2_NV_FLAG_NO_INDEX
                         : NGHTTP2_NV_FLAG_NONE;
        nv[n++] = (nghttp2_nv){(uint8_t *)p, (uint8_t *)v, (size_t)(colon - p),
                               (size_t)(eol - v), fl};
        p = eol + 2;
    }
    int whole = q->state == Q_DONE;
    long long cl = whole && !q->head ? (long long)q->resp.blen : q->resp_clen;
    if (cl >= 0 && !(q->resp.status == 204 || q->resp.status == 304)) {
        u64_str((unsigned long long)cl, clen);
        nv[n++] = (nghttp2_nv){(uint8_t *)"content-length", (uint8_t *)clen, 14, strlen(clen),
                               NGHTTP2_NV_FLAG_NONE};
    }
    if (!whole)
        q->streaming = 1;
    nghttp2_data_provider dp = {.source.ptr = q, .read_callback = h2_read_body};
    int nobody = q->head || (whole ? q->resp.blen == 0 : q->resp_clen == 0);
    int rc = nghttp2_submit_response(c->h2, q->stream_id, nv, n, nobody ? NULL : &dp);
    if (rc) {
        conn_unlink(c, q);
        st->q = NULL;
        if (q->state == Q_STREAM)
            up_abandon(q);
        else
            req_free(q);
        return;
    }
    q->h2_submitted = 1;
    /* The request stays linked to the conn until the stream closes (the
     * body provider reads from it). Frames go out at the end of the callback. */
    h2_mark_dirty(c);
}

void h2_flush(struct rt_conn *c)
{
    if (c->closing || !c->h2)
        return;
    /* Gather pending frames into one write, up to RT_WINDOW queued on the
     * socket; the rest is pulled when the socket drains (rt_stream_drained). */
    /* The worker's scratch buffer: no allocation per flush. conn_write
     * copies only what the socket does not take at once. */
    struct rt_worker *w = c->w;
    char *b = w->obuf;
    size_t len = 0, cap = w->obuf_cap;
    size_t queued = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
    for (;;) {
        if (queued + len >= RT_WINDOW) {
            c->h2_blocked = 1;
            break;
        }
        const uint8_t *d;
        ssize_t n = nghttp2_session_mem_send(c->h2, &d);
        if (n < 0) {
            w->obuf = b, w->obuf_cap = cap;
            conn_close(c);
            return;
        }
        if (n == 0)
            break;
        rt_buf_add(&b, &len, &cap, d, (size_t)n);
    }
    w->obuf = b, w->obuf_cap = cap;
    if (cap > 4 * RT_WINDOW) { /* a rare huge batch: do not keep it */
        w->obuf = NULL, w->obuf_cap = 0;
    }
    int rc = conn_write(c, b, len);
    if (!w->obuf)
        free(b);
    if (rc) {
        conn_close(c);
        return;
    }
    if (!nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2))
        conn_end(c);
}

int h2_start(struct rt_conn *c, const char *settings, size_t slen, struct rt_req *up_req,
                    int head)
{
    nghttp2_session_callbacks *cb;
    if (nghttp2_session_callbacks_new(&cb))
        return -1;
    nghttp2_session_callbacks_set_send_callback(cb, h2_send_cb);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, h2_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, h2_on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, h2_on_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, h2_on_frame);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, h2_on_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, h2_on_frame_send);
    nghttp2_option *opt;
    if (nghttp2_option_new(&opt)) {
        nghttp2_session_callbacks_del(cb);
        return -1;
    }
    nghttp2_option_set_no_auto_window_update(opt, 1); /* h2_consume decides */
    /* Request validation is h2check.c's, so that a malformed head gets a
     * 400 saying why instead of a bare reset. */
    nghttp2_option_set_no_http_messaging(opt, 1);
    int rc = nghttp2_session_server_new2(&c->h2, cb, c, opt);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cb);
    if (rc)
        return -1;
    c->proto = P_H2;
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 256},
                                   {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, RT_WINDOW}};
    nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, 2);
    /* The connection window only has to cover the streams' windows in use. */
    nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0, RT_H2_CONN_WINDOW);
    if (up_req) {
        struct h2_stream *st = h2_stream_new(c);
        if (!st)
            return -1;
        st->q = up_req;
        /* A server session ignores upgrade2's user data: set it after. */
        if (nghttp2_session_upgrade2(c->h2, (const uint8_t *)settings, slen, head, NULL) ||
            nghttp2_session_set_stream_user_data(c->h2, 1, st))
            return -1;
    }
    return 0;
}

int h2_feed(struct rt_conn *c, const char *d, size_t n)
{
    ssize_t rc = nghttp2_session_mem_recv(c->h2, (const uint8_t *)d, n);
    return rc < 0 ? -1 : 0;
}
