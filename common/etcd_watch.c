/*
 * etcd_watch.c - a streaming etcd watch over the v3 JSON gateway on a libuv
 * loop (see etcd.h).
 *
 * POST /v3/watch with one create_request; etcd answers 200 with a chunked
 * body that never ends: one JSON object per line, {"result": {...}}. The
 * first says "created", the next carry "events" (a put has no "type", a
 * delete has "type": "DELETE"), a cancel carries "canceled" and, when the
 * start revision was compacted, "compact_revision". The request carries the
 * gateway's form of the "hasleader" metadata, so a member cut off from its
 * cluster cancels the watch instead of going quiet.
 *
 * Each connection attempt is a `struct conn` of its own; abandoning one
 * detaches it from the watch (conn->w = NULL) and libuv's callbacks free it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "etcd.h"

#define COMP "etcd-watch"
#define CONNECT_TIMEOUT_MS 2000
#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 2000

struct conn;

struct wlm_etcd_watch {
    uv_loop_t *loop;
    char hosts[16][64];
    int ports[16];
    size_t nep, cur;
    char *key, *range_end; /* base64 */
    struct wlm_etcd_watch_cbs cbs;
    void *ud;
    uv_timer_t timer; /* reconnect backoff, connect timeout */
    struct conn *conn;
    int64_t next_rev, seen_rev;
    double last_data;
    unsigned backoff_ms;
    int connected, waiting_restart, closing;
    uint64_t events, connects, drops;
};

struct conn {
    struct wlm_etcd_watch *w; /* NULL once abandoned */
    uv_getaddrinfo_t gai;
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    int tcp_init, resolving;
    char *req; /* the request text, alive until written */
    char *raw; /* received bytes not yet decoded */
    size_t rlen, rcap;
    char *body; /* de-chunked bytes not yet split into lines */
    size_t blen, bcap;
    int headers_done;
    size_t chunk_left; /* bytes of the current chunk (or of its CRLF) still to come */
    int in_chunk;      /* 0: a size line next, 1: data, 2: the CRLF after it */
};

static void schedule_connect(struct wlm_etcd_watch *w, unsigned ms);
static void conn_abandon(struct conn *c);

/* ---------------------------------------------------------------- helpers */

static int64_t jint(const json_t *o, const char *k)
{
    const json_t *v = json_object_get(o, k);
    if (json_is_string(v))
        return strtoll(json_string_value(v), NULL, 10);
    return json_is_integer(v) ? json_integer_value(v) : 0;
}

static int grow(char **buf, size_t *cap, size_t need)
{
    if (need + 1 <= *cap)
        return 0;
    size_t nc = *cap ? *cap : 8192;
    while (nc < need + 1)
        nc *= 2;
    char *nb = realloc(*buf, nc);
    if (!nb)
        return -ENOMEM;
    *buf = nb;
    *cap = nc;
    return 0;
}

/* The connection is gone (why): tell the owner, try again after a backoff on
 * the next endpoint. */
static void conn_failed(struct conn *c, const char *why)
{
    struct wlm_etcd_watch *w = c->w;
    if (!w)
        return;
    conn_abandon(c);
    if (w->connected) {
        w->connected = 0;
        w->drops++;
        w->backoff_ms = BACKOFF_MIN_MS; /* it worked until now: come back quickly */
        if (w->cbs.on_state)
            w->cbs.on_state(w->ud, 0, why);
    } else {
        w->backoff_ms = w->backoff_ms ? w->backoff_ms * 2 : BACKOFF_MIN_MS;
        if (w->backoff_ms > BACKOFF_MAX_MS)
            w->backoff_ms = BACKOFF_MAX_MS;
    }
    if (w->closing || w->waiting_restart)
        return;
    w->cur = (w->cur + 1) % w->nep;
    schedule_connect(w, w->backoff_ms);
}

/* ---------------------------------------------------------------- results */

static void handle_result(struct conn *c, const json_t *res)
{
    struct wlm_etcd_watch *w = c->w;
    int64_t hrev = jint(json_object_get(res, "header"), "revision");
    if (hrev > w->seen_rev)
        w->seen_rev = hrev;
    if (json_is_true(json_object_get(res, "created"))) {
        w->connected = 1;
        w->connects++;
        w->backoff_ms = 0;
        uv_timer_stop(&w->timer);
        if (w->cbs.on_state)
            w->cbs.on_state(w->ud, 1, NULL);
    }
    json_t *events = json_object_get(res, "events");
    size_t i;
    json_t *ev;
    int64_t last = 0;
    json_array_foreach(events, i, ev)
    {
        const json_t *kv = json_object_get(ev, "kv");
        const char *type = json_string_value(json_object_get(ev, "type"));
        const char *k64 = json_string_value(json_object_get(kv, "key"));
        const char *v64 = json_string_value(json_object_get(kv, "value"));
        int64_t mod = jint(kv, "mod_revision");
        char *key = wlm_base64_decode(k64 ? k64 : "", NULL);
        size_t vlen = 0;
        int del = type && strcmp(type, "DELETE") == 0;
        char *val = del ? NULL : wlm_base64_decode(v64 ? v64 : "", &vlen);
        if (key && (del || val) && w->cbs.on_event)
            w->cbs.on_event(w->ud, key, val, vlen, mod);
        free(key);
        free(val);
        w->events++;
        if (mod > last)
            last = mod;
        if (!c->w)
            return; /* the owner restarted or freed the watch from its callback */
    }
    if (last > 0) {
        w->next_rev = last + 1;
        if (w->cbs.on_batch)
            w->cbs.on_batch(w->ud, last);
        if (!c->w)
            return;
    }
    if (json_is_true(json_object_get(res, "canceled"))) {
        int64_t compact = jint(res, "compact_revision");
        if (compact > 0) {
            w->waiting_restart = 1;
            conn_failed(c, "start revision compacted");
            if (w->cbs.on_compacted)
                w->cbs.on_compacted(w->ud, compact);
            return;
        }
        const char *why = json_string_value(json_object_get(res, "cancel_reason"));
        conn_failed(c, why && why[0] ? why : "watch canceled by the member");
    }
}

static void handle_line(struct conn *c, const char *line, size_t len)
{
    json_error_t je;
    json_t *v = json_loadb(line, len, 0, &je);
    if (!v) {
        conn_failed(c, "unreadable answer from etcd");
        return;
    }
    const json_t *res = json_object_get(v, "result");
    if (res) {
        handle_result(c, res);
    } else {
        const json_t *e = json_object_get(v, "error");
        const char *msg = json_string_value(json_object_get(e, "message"));
        char why[200];
        snprintf(why, sizeof(why), "watch error: %s", msg ? msg : "unknown");
        conn_failed(c, why);
    }
    json_decref(v);
}

/* Split the de-chunked body into lines. */
static void drain_lines(struct conn *c)
{
    size_t start = 0;
    while (c->w && start < c->blen) {
        char *nl = memchr(c->body + start, '\n', c->blen - start);
        if (!nl)
            break;
        size_t len = (size_t)(nl - (c->body + start));
        if (len > 0)
            handle_line(c, c->body + start, len);
        start += len + 1;
    }
    if (!c->w)
        return;
    memmove(c->body, c->body + start, c->blen - start);
    c->blen -= start;
}

/* Decode as much of the raw bytes as possible: headers, then chunks. */
static void parse_raw(struct conn *c)
{
    size_t pos = 0;
    if (!c->headers_done) {
        char *end = c->rlen ? memmem(c->raw, c->rlen, "\r\n\r\n", 4) : NULL;
        if (!end)
            return;
        c->raw[c->rlen] = 0;
        int status = 0;
        if (sscanf(c->raw, "HTTP/1.%*d %d", &status) != 1 || status != 200) {
            char why[160];
            snprintf(why, sizeof(why), "watch answered HTTP %d", status);
            conn_failed(c, why);
            return;
        }
        *end = 0;
        if (!strcasestr(c->raw, "transfer-encoding: chunked")) {
            conn_failed(c, "watch answer is not chunked");
            return;
        }
        c->headers_done = 1;
        pos = (size_t)(end - c->raw) + 4;
    }
    while (pos < c->rlen) {
        if (c->in_chunk == 0) { /* a size line */
            char *le = memmem(c->raw + pos, c->rlen - pos, "\r\n", 2);
            if (!le)
                break;
            char *stop = NULL;
            unsigned long sz = strtoul(c->raw + pos, &stop, 16);
            if (stop == c->raw + pos) {
                conn_failed(c, "bad chunk in the watch answer");
                return;
            }
            pos = (size_t)(le - c->raw) + 2;
            if (sz == 0) {
                conn_failed(c, "the member ended the watch");
                return;
            }
            c->chunk_left = sz;
            c->in_chunk = 1;
        } else if (c->in_chunk == 1) { /* data */
            size_t take = c->rlen - pos;
            if (take > c->chunk_left)
                take = c->chunk_left;
            if (grow(&c->body, &c->bcap, c->blen + take)) {
                conn_failed(c, "out of memory");
                return;
            }
            memcpy(c->body + c->blen, c->raw + pos, take);
            c->blen += take;
            pos += take;
            c->chunk_left -= take;
            if (c->chunk_left == 0) {
                c->in_chunk = 2;
                c->chunk_left = 2;
            }
        } else { /* the CRLF after the data */
            size_t take = c->rlen - pos;
            if (take > c->chunk_left)
                take = c->chunk_left;
            pos += take;
            c->chunk_left -= take;
            if (c->chunk_left == 0)
                c->in_chunk = 0;
        }
    }
    memmove(c->raw, c->raw + pos, c->rlen - pos);
    c->rlen -= pos;
    drain_lines(c);
}

/* ---------------------------------------------------------------- libuv */

static void on_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    free(c->req);
    free(c->raw);
    free(c->body);
    free(c);
}

static void conn_abandon(struct conn *c)
{
    struct wlm_etcd_watch *w = c->w;
    if (w && w->conn == c)
        w->conn = NULL;
    c->w = NULL;
    if (c->resolving)
        return; /* the resolver's callback frees it */
    if (c->tcp_init) {
        if (!uv_is_closing((uv_handle_t *)&c->tcp))
            uv_close((uv_handle_t *)&c->tcp, on_closed);
        return;
    }
    on_closed((uv_handle_t *)&c->tcp);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct conn *c = h->data;
    (void)hint;
    if (grow(&c->raw, &c->rcap, c->rlen + 16384)) {
        buf->base = NULL;
        buf->len = 0;
        return;
    }
    buf->base = c->raw + c->rlen;
    buf->len = c->rcap - c->rlen - 1;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    (void)buf;
    if (!c->w)
        return;
    if (n < 0) {
        conn_failed(c, n == UV_EOF ? "the member closed the watch" : uv_strerror((int)n));
        return;
    }
    if (n == 0)
        return;
    c->rlen += (size_t)n;
    c->w->last_data = wlm_now_mono();
    parse_raw(c);
}

static void on_written(uv_write_t *req, int status)
{
    struct conn *c = req->data;
    free(c->req);
    c->req = NULL;
    if (!c->w)
        return;
    if (status < 0)
        conn_failed(c, uv_strerror(status));
}

static void on_connected(uv_connect_t *req, int status)
{
    struct conn *c = req->data;
    struct wlm_etcd_watch *w = c->w;
    if (!w)
        return;
    if (status < 0) {
        conn_failed(c, uv_strerror(status));
        return;
    }
    char body[1024];
    int bn = snprintf(body, sizeof(body),
                      "{\"create_request\":{\"key\":\"%s\"%s%s%s,\"start_revision\":\"%lld\"}}", w->key,
                      w->range_end ? ",\"range_end\":\"" : "", w->range_end ? w->range_end : "",
                      w->range_end ? "\"" : "", (long long)w->next_rev);
    c->req = wlm_asprintf("POST /v3/watch HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                          "Grpc-Metadata-Hasleader: true\r\nContent-Length: %d\r\n\r\n%s",
                          w->hosts[w->cur], w->ports[w->cur], bn, body);
    uv_buf_t b = uv_buf_init(c->req, (unsigned)strlen(c->req));
    c->wreq.data = c;
    int rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_written);
    if (rc == 0)
        rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rc < 0)
        conn_failed(c, uv_strerror(rc));
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *ai)
{
    struct conn *c = req->data;
    c->resolving = 0;
    struct wlm_etcd_watch *w = c->w;
    if (!w) {
        uv_freeaddrinfo(ai);
        on_closed((uv_handle_t *)&c->tcp);
        return;
    }
    if (status < 0 || !ai) {
        uv_freeaddrinfo(ai);
        conn_failed(c, status < 0 ? uv_strerror(status) : "no address");
        return;
    }
    uv_tcp_init(w->loop, &c->tcp);
    c->tcp_init = 1;
    c->tcp.data = c;
    uv_tcp_nodelay(&c->tcp, 1);
    c->creq.data = c;
    int rc = uv_tcp_connect(&c->creq, &c->tcp, ai->ai_addr, on_connected);
    uv_freeaddrinfo(ai);
    if (rc < 0)
        conn_failed(c, uv_strerror(rc));
}

/* The timer: time to connect, or the connection did not get created in time. */
static void on_timer(uv_timer_t *t)
{
    struct wlm_etcd_watch *w = t->data;
    if (w->closing)
        return;
    if (w->conn) { /* still not created */
        conn_failed(w->conn, "no answer from the member in time");
        return;
    }
    struct conn *c = calloc(1, sizeof(*c));
    if (!c) {
        schedule_connect(w, BACKOFF_MAX_MS);
        return;
    }
    c->w = w;
    c->gai.data = c;
    w->conn = c;
    char port[16];
    snprintf(port, sizeof(port), "%d", w->ports[w->cur]);
    struct addrinfo hints = {0};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    c->resolving = 1;
    int rc = uv_getaddrinfo(w->loop, &c->gai, on_resolved, w->hosts[w->cur], port, &hints);
    if (rc < 0) {
        c->resolving = 0;
        conn_failed(c, uv_strerror(rc));
        return;
    }
    uv_timer_start(&w->timer, on_timer, CONNECT_TIMEOUT_MS, 0);
}

static void schedule_connect(struct wlm_etcd_watch *w, unsigned ms)
{
    uv_timer_start(&w->timer, on_timer, ms, 0);
}

/* ---------------------------------------------------------------- API */

int wlm_etcd_watch_new(uv_loop_t *loop, const struct wlm_etcd *e, const char *key, int prefix,
                       int64_t start_rev, const struct wlm_etcd_watch_cbs *cbs, void *ud,
                       struct wlm_etcd_watch **out, struct wlm_error *err)
{
    *out = NULL;
    struct wlm_etcd_watch *w = calloc(1, sizeof(*w));
    if (!w)
        return wlm_error_set(err, ENOMEM, "out of memory");
    w->loop = loop;
    w->nep = wlm_etcd_nendpoints(e);
    if (w->nep > 16)
        w->nep = 16;
    for (size_t i = 0; i < w->nep; i++)
        wlm_strlcpy(w->hosts[i], wlm_etcd_endpoint_host(e, i, &w->ports[i]), sizeof(w->hosts[0]));
    w->key = wlm_base64_encode(key, strlen(key));
    if (prefix) {
        /* The smallest key above every key with this prefix. */
        char *end = wlm_strdup(key);
        size_t n = strlen(end);
        while (n > 0 && (unsigned char)end[n - 1] == 0xff)
            end[--n] = 0;
        if (n > 0) {
            end[n - 1]++;
            w->range_end = wlm_base64_encode(end, n);
        } else {
            w->range_end = wlm_strdup("AA=="); /* "\0": every key */
        }
        free(end);
    }
    w->cbs = *cbs;
    w->ud = ud;
    w->next_rev = start_rev;
    uv_timer_init(loop, &w->timer);
    w->timer.data = w;
    schedule_connect(w, 0);
    *out = w;
    return 0;
}

void wlm_etcd_watch_restart(struct wlm_etcd_watch *w, int64_t start_rev, int next_endpoint)
{
    if (w->conn)
        conn_abandon(w->conn);
    if (w->connected) {
        w->connected = 0;
        w->drops++;
    }
    w->waiting_restart = 0;
    w->next_rev = start_rev;
    w->backoff_ms = 0;
    if (next_endpoint)
        w->cur = (w->cur + 1) % w->nep;
    schedule_connect(w, 0);
}

static void on_timer_closed(uv_handle_t *h)
{
    struct wlm_etcd_watch *w = h->data;
    free(w->key);
    free(w->range_end);
    free(w);
}

void wlm_etcd_watch_free(struct wlm_etcd_watch *w)
{
    if (!w)
        return;
    w->closing = 1;
    if (w->conn)
        conn_abandon(w->conn);
    uv_timer_stop(&w->timer);
    uv_close((uv_handle_t *)&w->timer, on_timer_closed);
}

void wlm_etcd_watch_stats(const struct wlm_etcd_watch *w, struct wlm_etcd_watch_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (!w)
        return;
    out->connected = w->connected;
    out->next_rev = w->next_rev;
    out->seen_rev = w->seen_rev;
    out->last_data = w->last_data;
    out->events = w->events;
    out->connects = w->connects;
    out->drops = w->drops;
    snprintf(out->endpoint, sizeof(out->endpoint), "%s:%d", w->hosts[w->cur], w->ports[w->cur]);
}
