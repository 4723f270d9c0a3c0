/*
 * http_server.c - HTTP/1.1 server on libuv + http-parser.
 *
 * One wlm_http_conn per TCP connection. Requests are parsed into http_sreq
 * objects that join the connection's FIFO queue as soon as their header is
 * complete (or, for rejected input, with a prepared error response). Handlers
 * run immediately, even for pipelined requests, and may answer on a later loop
 * turn; responses are buffered per request and written strictly in queue order,
 * so a slow first request holds back the bytes (not the handling) of the
 * requests behind it. At most HTTP_MAX_PIPELINE requests may wait per
 * connection; beyond that the parser is paused and reading stops.
 *
 * Anything that makes the byte stream untrustworthy (bad syntax, limits,
 * conflicting framing headers, header timeout) produces one final error
 * response in order, after which the connection stops parsing, sends its
 * queued responses, half-closes and drains the peer's input briefly so the
 * peer reads the error instead of a reset.
 *
 * Request lifetime: a request handed to a handler belongs to the handler until
 * it responds. When the connection dies first, on_abort (if set) runs and the
 * request is freed right after it returns; without on_abort the request is
 * kept as an orphan whose respond/stream_end returns -ENOTCONN and frees it.
 * Orphans still unanswered when the server closes are freed with the server.
 *
 * HTTPS: with a certificate, every connection is a TLS session over memory
 * BIOs (wlm_tls.h). Ciphertext from the socket is fed to OpenSSL and the
 * plaintext it yields goes through exactly the path a plain connection's
 * bytes take; responses are encrypted as they are handed to the socket.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>

#include "common.h"
#include "http_internal.h"
#include "wlm_tls.h"

#define HTTP_MAX_PIPELINE 32
#define HTTP_MAX_HEADERS 128
#define HTTP_DRAIN_MS 500
#define HTTP_READ_BUF (64 * 1024)
#define HTTP_MAX_STREAM_BACKLOG (8u * 1024 * 1024) /* unsent stream bytes before we give up */
#define HTTP_MAX_PARAMS WLM_ARRAY_LEN(((struct wlm_http_req *)0)->params)

/* ---------------------------------------------------------------- shared helpers */

void wlm__http_hdr_acc_init(struct wlm__http_hdr_acc *a)
{
    wlm_buf_init(&a->field);
    wlm_buf_init(&a->value);
    a->in_value = 0;
}

void wlm__http_hdr_acc_fini(struct wlm__http_hdr_acc *a)
{
    wlm_buf_fini(&a->field);
    wlm_buf_fini(&a->value);
    a->in_value = 0;
}

void wlm__http_hdr_acc_reset(struct wlm__http_hdr_acc *a)
{
    a->field.len = 0;
    a->value.len = 0;
    a->in_value = 0;
}

static int is_pow2_or_zero(size_t n)
{
    return (n & (n - 1)) == 0;
}

int wlm__http_headers_add(struct wlm_http_header **h, size_t *n, const char *name, size_t nlen,
                          const char *value, size_t vlen)
{
    if (is_pow2_or_zero(*n)) {
        size_t cap = *n ? *n * 2 : 8;
        struct wlm_http_header *p = realloc(*h, cap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        *h = p;
    }
    char *nm = strndup(name ? name : "", nlen);
    char *v = strndup(value ? value : "", vlen);
    if (!nm || !v) {
        free(nm);
        free(v);
        return -ENOMEM;
    }
    (*h)[*n].name = nm;
    (*h)[*n].value = v;
    (*n)++;
    return 0;
}

void wlm__http_headers_free(struct wlm_http_header *h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(h[i].name);
        free(h[i].value);
    }
    free(h);
}

const char *wlm__http_headers_find(const struct wlm_http_header *h, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(h[i].name, name) == 0)
            return h[i].value;
    return NULL;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

char *wlm__http_pct_decode(const char *src, size_t len, int plus)
{
    char *out = malloc(len + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char c = src[i];
        if (c == '%') {
            if (i + 2 >= len) {
                free(out);
                return NULL;
            }
            int h = hexval(src[i + 1]), l = hexval(src[i + 2]);
            if (h < 0 || l < 0 || (h == 0 && l == 0)) {
                free(out);
                return NULL;
            }
            out[o++] = (char)(h * 16 + l);
            i += 2;
        } else if (c == '+' && plus) {
            out[o++] = ' ';
        } else {
            out[o++] = c;
        }
    }
    out[o] = '\0';
    return out;
}

const char *wlm_http_reason(int status)
{
    switch (status) {
#define XX(num, name, string)                                                                      \
    case num: return #string;
        HTTP_STATUS_MAP(XX)
#undef XX
    default: return "Unknown";
    }
}

/* ---------------------------------------------------------------- types */

struct http_route {
    char *method; /* NULL = any */
    char *pattern; /* as registered, shown to the authenticator as req->route */
    char **segs;
    size_t nsegs;
    int wildcard; /* pattern ended in "*" */
    int auth;
    wlm_http_handler_fn fn;
    void *ud;
};

enum sreq_state {
    SREQ_PARSING,   /* header or body still arriving */
    SREQ_HANDLING,  /* with the handler, no response yet */
    SREQ_STREAMING, /* chunked response begun */
    SREQ_DONE,      /* response complete (maybe not yet written) */
};

struct http_sreq {
    struct wlm_http_req pub; /* first: the public view is a cast away */
    struct http_sreq *next, *prev;
    struct wlm_http_server *srv;
    enum sreq_state state;
    struct wlm_buf url, body;
    struct wlm_buf out; /* response bytes not yet handed to the socket */
    size_t hdr_bytes;
    int headers_done;
    int seen_cl, seen_te;
    char *cl_value;
    int is_head, chunked, no_body;
    int close_after; /* close the connection after this response */
    int status;
    uint64_t t0; /* uv_hrtime at the first byte */
    int orphan, in_abort;
    int audited; /* reached an auth route: report the status to auth.answered once */
};

enum timer_mode { T_NONE, T_IDLE, T_HEADER, T_DRAIN, T_KILL };

struct wlm_http_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_shutdown_t shut;
    struct wlm_http_server *srv;
    struct wlm_http_conn *next, *prev;
    http_parser parser;
    struct http_sreq *cur; /* being parsed */
    struct wlm__http_hdr_acc acc;
    struct http_sreq *qhead, *qtail; /* awaiting their turn to be written */
    size_t nq;
    struct wlm_buf inbuf; /* unparsed input kept while the parser is paused */
    size_t inoff;
    int handles;   /* uv handles not yet closed */
    int closing;   /* uv_close issued */
    int final;     /* no further requests will be parsed */
    int draining;  /* shut down our side; discarding input until EOF */
    int peer_eof;  /* the peer half-closed */
    int paused;    /* parser paused with input in inbuf */
    int in_parse;  /* inside http_parser_execute: do not re-enter */
    int reading;
    enum timer_mode tmode;
    char peer[64];
    SSL *ssl;   /* HTTPS: the session, NULL on plain connections */
    int tls_up; /* handshake finished */
    int tls_seen; /* some ciphertext arrived */
};

struct wlm_http_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    int listener_open;
    char *host, *token;
    int port;
    size_t max_header_bytes, max_body_bytes;
    unsigned header_timeout_ms, idle_timeout_ms, max_connections;
    struct http_route *routes;
    size_t nroutes;
    struct wlm_metrics *metrics;
    struct wlm_counter *by_class[5];
    struct wlm_histogram *latency;
    struct wlm_http_conn *conns;
    size_t nconns;
    struct http_sreq *orphans;
    int closing;
    void (*done)(void *ud);
    void *done_ud;
    struct wlm_http_auth auth; /* check == NULL: the shared token */
    char *tls_cert, *tls_key;
    SSL_CTX *tls_ctx; /* set by listen when tls_cert is given */
    char rbuf[HTTP_READ_BUF]; /* reads are consumed synchronously, so one buffer serves all */
};

static void conn_close(struct wlm_http_conn *conn);
static void conn_flush(struct wlm_http_conn *conn);
static void conn_update_timer(struct wlm_http_conn *conn);
static void conn_resume(struct wlm_http_conn *conn);
static void timer_cb(uv_timer_t *t);
static int respond_error_hdr(struct wlm_http_req *req, int status, const char *extra,
                             const char *error, const char *detail);

/* ---------------------------------------------------------------- requests */

static struct http_sreq *sreq_new(struct wlm_http_conn *conn)
{
    struct http_sreq *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->srv = conn->srv;
    r->pub.conn = conn;
    r->pub.http_major = 1;
    r->pub.http_minor = 1;
    r->pub.method = "GET";
    wlm_strlcpy(r->pub.peer, conn->peer, sizeof(r->pub.peer));
    r->pub.tls = conn->ssl != NULL;
    wlm_buf_init(&r->url);
    wlm_buf_init(&r->body);
    wlm_buf_init(&r->out);
    r->t0 = uv_hrtime();
    return r;
}

static void sreq_free(struct http_sreq *r)
{
    if (!r)
        return;
    free(r->pub.url);
    free(r->pub.path);
    free(r->pub.query);
    wlm__http_headers_free(r->pub.headers, r->pub.nheaders);
    free(r->pub.body);
    for (size_t i = 0; i < r->pub.nparams; i++)
        free(r->pub.params[i]);
    wlm_buf_fini(&r->url);
    wlm_buf_fini(&r->body);
    wlm_buf_fini(&r->out);
    free(r->cl_value);
    free(r);
}

static void queue_push(struct wlm_http_conn *conn, struct http_sreq *r)
{
    r->next = NULL;
    r->prev = conn->qtail;
    if (conn->qtail)
        conn->qtail->next = r;
    else
        conn->qhead = r;
    conn->qtail = r;
    conn->nq++;
}

static void queue_remove(struct wlm_http_conn *conn, struct http_sreq *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        conn->qhead = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        conn->qtail = r->prev;
    r->next = r->prev = NULL;
    conn->nq--;
}

static void orphan_remove(struct wlm_http_server *srv, struct http_sreq *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        srv->orphans = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->next = r->prev = NULL;
}

/* The handler finished with a request whose connection is gone. */
static int orphan_release(struct http_sreq *r)
{
    if (!r->in_abort) {
        orphan_remove(r->srv, r);
        sreq_free(r);
    }
    return -ENOTCONN;
}

const char *wlm_http_req_header(const struct wlm_http_req *req, const char *name)
{
    return req ? wlm__http_headers_find(req->headers, req->nheaders, name) : NULL;
}

char *wlm_http_req_query(const struct wlm_http_req *req, const char *key)
{
    if (!req || !req->query || !key)
        return NULL;
    size_t klen = strlen(key);
    const char *p = req->query;
    while (*p) {
        const char *end = strchr(p, '&');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        size_t nlen = eq ? (size_t)(eq - p) : len;
        char *name = wlm__http_pct_decode(p, nlen, 1);
        int match = name && strlen(name) == klen && memcmp(name, key, klen) == 0;
        free(name);
        if (match)
            return eq ? wlm__http_pct_decode(eq + 1, len - nlen - 1, 1) : strdup("");
        if (!end)
            break;
        p = end + 1;
    }
    return NULL;
}

/* ---------------------------------------------------------------- responses */

static void record_metrics(struct http_sreq *r)
{
    struct wlm_http_server *srv = r->srv;
    if (!srv->metrics)
        return;
    int cls = r->status / 100;
    if (cls >= 1 && cls <= 5 && srv->by_class[cls - 1])
        wlm_counter_add(srv->by_class[cls - 1], 1);
    if (srv->latency)
        wlm_histogram_observe(srv->latency, (double)(uv_hrtime() - r->t0) / 1e9);
}

static int status_has_body(int status)
{
    return !(status < 200 || status == 204 || status == 304);
}

/* Status line and the headers every response carries. */
static int put_head(struct http_sreq *r, int status, const char *content_type, const char *extra)
{
    struct wlm_http_conn *conn = r->pub.conn;
    struct wlm_buf *o = &r->out;
    if (conn->srv->closing)
        r->close_after = 1;
    int rc = wlm_buf_printf(o, "HTTP/1.1 %d %s\r\n", status, wlm_http_reason(status));
    if (!rc && content_type && status_has_body(status))
        rc = wlm_buf_printf(o, "Content-Type: %s\r\n", content_type);
    if (!rc && r->close_after)
        rc = wlm_buf_printf(o, "Connection: close\r\n");
    else if (!rc && r->pub.http_minor == 0 && r->pub.http_major == 1)
        rc = wlm_buf_printf(o, "Connection: keep-alive\r\n");
    if (!rc && extra && *extra) {
        size_t el = strlen(extra);
        rc = wlm_buf_append(o, extra, el);
        if (!rc && (el < 2 || extra[el - 2] != '\r' || extra[el - 1] != '\n'))
            rc = wlm_buf_append(o, "\r\n", 2);
    }
    return rc;
}

/* Tell the authenticator how a request to an auth route was answered. */
static void note_answered(struct http_sreq *r, int status)
{
    if (!r->audited)
        return;
    r->audited = 0;
    struct wlm_http_server *srv = r->srv;
    if (srv->auth.answered)
        srv->auth.answered(srv->auth.ud, &r->pub, status);
}

int wlm_http_respond(struct wlm_http_req *req, int status, const char *content_type,
                     const char *extra_headers, const void *body, size_t len)
{
    struct http_sreq *r = (struct http_sreq *)req;
    if (!r)
        return -EINVAL;
    note_answered(r, status);
    if (r->orphan)
        return orphan_release(r);
    if (r->state != SREQ_HANDLING)
        return -EINVAL;
    struct wlm_http_conn *conn = req->conn;
    int rc = put_head(r, status, content_type, extra_headers);
    if (!rc && status_has_body(status))
        rc = wlm_buf_printf(&r->out, "Content-Length: %zu\r\n", len);
    if (!rc)
        rc = wlm_buf_append(&r->out, "\r\n", 2);
    if (!rc && len && status_has_body(status) && !r->is_head)
        rc = wlm_buf_append(&r->out, body, len);
    r->status = status;
    r->state = SREQ_DONE;
    if (rc) {
        /* Out of memory half way through a response: the stream cannot be
         * repaired, so drop the connection. */
        r->out.len = 0;
        conn_close(conn);
        return rc;
    }
    record_metrics(r);
    conn_flush(conn);
    return 0;
}

int wlm_http_respond_json(struct wlm_http_req *req, int status, json_t *v)
{
    char *s = v ? wlm_json_dumps(v) : NULL;
    json_decref(v);
    if (!s)
        return respond_error_hdr(req, 500, NULL, "internal", "could not encode the response");
    int rc = wlm_http_respond(req, status, "application/json", NULL, s, strlen(s));
    free(s);
    return rc;
}

static int respond_error_hdr(struct wlm_http_req *req, int status, const char *extra,
                             const char *error, const char *detail)
{
    json_t *v = wlm_json_error_body(error, detail);
    char *s = v ? wlm_json_dumps(v) : NULL;
    json_decref(v);
    int rc;
    if (s)
        rc = wlm_http_respond(req, status, "application/json", extra, s, strlen(s));
    else
        rc = wlm_http_respond(req, status, "text/plain", extra, error, strlen(error));
    free(s);
    return rc;
}

/* Map an error name ("not_found") back to its status for status 0. */
static int status_for_name(const char *error)
{
    for (int c = WLM_EINVAL; c <= WLM_EINTERNAL; c++)
        if (strcmp(wlm_error_name(-c), error) == 0)
            return wlm_error_http_status(-c);
    return 500;
}

int wlm_http_respond_error(struct wlm_http_req *req, int status, const char *error,
                           const char *detail_fmt, ...)
{
    char detail[1024] = "";
    if (detail_fmt) {
        va_list ap;
        va_start(ap, detail_fmt);
        vsnprintf(detail, sizeof(detail), detail_fmt, ap);
        va_end(ap);
    }
    if (!error)
        error = "error";
    if (status == 0)
        status = status_for_name(error);
    return respond_error_hdr(req, status,
                             status == 401 ? "WWW-Authenticate: Bearer realm=\"wlm\"" : NULL, error,
                             detail);
}

int wlm_http_respond_werr(struct wlm_http_req *req, const struct wlm_error *err)
{
    int code = err && err->code ? err->code : -WLM_EINTERNAL;
    int status = wlm_error_http_status(code);
    const char *msg = err && err->msg[0] ? err->msg : wlm_error_name(code);
    json_t *v = wlm_json_error_body(wlm_error_name(code), msg);
    if (v && err && err->field[0])
        json_object_set_new(v, "field", json_string(err->field));
    if (!v)
        return respond_error_hdr(req, status, NULL, wlm_error_name(code), msg);
    return wlm_http_respond_json(req, status, v);
}

int wlm_http_stream_begin(struct wlm_http_req *req, int status, const char *content_type,
                          const char *extra_headers)
{
    struct http_sreq *r = (struct http_sreq *)req;
    if (!r)
        return -EINVAL;
    note_answered(r, status);
    if (r->orphan)
        return -ENOTCONN;
    if (r->state != SREQ_HANDLING)
        return -EINVAL;
    /* HTTP/1.0 has no chunked encoding: the body ends when we close. */
    r->chunked = !(req->http_major == 1 && req->http_minor == 0);
    if (!r->chunked)
        r->close_after = 1;
    r->no_body = r->is_head || !status_has_body(status);
    int rc = put_head(r, status, content_type, extra_headers);
    if (!rc && r->chunked && !r->no_body)
        rc = wlm_buf_printf(&r->out, "Transfer-Encoding: chunked\r\n");
    if (!rc)
        rc = wlm_buf_append(&r->out, "\r\n", 2);
    r->status = status;
    r->state = SREQ_STREAMING;
    if (rc) {
        r->out.len = 0;
        conn_close(req->conn);
        return rc;
    }
    conn_flush(req->conn);
    return 0;
}

int wlm_http_stream_write(struct wlm_http_req *req, const void *data, size_t len)
{
    struct http_sreq *r = (struct http_sreq *)req;
    if (!r)
        return -EINVAL;
    if (r->orphan)
        return -ENOTCONN;
    if (r->state != SREQ_STREAMING)
        return -EINVAL;
    if (len == 0 || r->no_body)
        return 0; /* an empty chunk would end the stream */
    int rc = 0;
    if (r->chunked)
        rc = wlm_buf_printf(&r->out, "%zx\r\n", len);
    if (!rc)
        rc = wlm_buf_append(&r->out, data, len);
    if (!rc && r->chunked)
        rc = wlm_buf_append(&r->out, "\r\n", 2);
    if (rc) {
        conn_close(req->conn);
        return rc;
    }
    struct wlm_http_conn *conn = req->conn;
    conn_flush(conn);
    /* A consumer that does not keep up would make us buffer without bound.
     * Drop it from the next loop turn (not here: on_abort would then run
     * inside this call, under the caller's feet). */
    if (!conn->closing && conn->tmode != T_KILL &&
        conn->tcp.write_queue_size + r->out.len > HTTP_MAX_STREAM_BACKLOG) {
        conn->tmode = T_KILL;
        uv_timer_start(&conn->timer, timer_cb, 0, 0);
    }
    return 0;
}

int wlm_http_stream_end(struct wlm_http_req *req)
{
    struct http_sreq *r = (struct http_sreq *)req;
    if (!r)
        return -EINVAL;
    if (r->orphan)
        return orphan_release(r);
    if (r->state != SREQ_STREAMING)
        return -EINVAL;
    int rc = 0;
    if (r->chunked && !r->no_body)
        rc = wlm_buf_append(&r->out, "0\r\n\r\n", 5);
    r->state = SREQ_DONE;
    if (rc) {
        conn_close(req->conn);
        return rc;
    }
    record_metrics(r);
    conn_flush(req->conn);
    return 0;
}

/* ---------------------------------------------------------------- connection I/O */

struct http_wreq {
    uv_write_t w;
    char *data;
};

static void write_cb(uv_write_t *w, int status)
{
    struct http_wreq *wr = (struct http_wreq *)w;
    struct wlm_http_conn *conn = w->handle->data;
    free(wr->data);
    free(wr);
    if (status < 0 && status != UV_ECANCELED)
        conn_close(conn);
}

/* Send what OpenSSL produced (handshake, records, alerts). */
static int conn_write_raw(struct wlm_http_conn *conn, char *data, size_t len)
{
    struct http_wreq *wr = malloc(sizeof(*wr));
    if (!wr) {
        free(data);
        conn_close(conn);
        return -ENOMEM;
    }
    wr->data = data;
    uv_buf_t ub = uv_buf_init(wr->data, (unsigned)len);
    int rc = uv_write(&wr->w, (uv_stream_t *)&conn->tcp, &ub, 1, write_cb);
    if (rc) {
        free(wr->data);
        free(wr);
        conn_close(conn);
    }
    return rc;
}

static int conn_tls_flush(struct wlm_http_conn *conn)
{
    char *out;
    long n = wlm_tls_take_output(conn->ssl, &out);
    if (n < 0) {
        conn_close(conn);
        return -ENOMEM;
    }
    return n ? conn_write_raw(conn, out, (size_t)n) : 0;
}

/* Hand the buffer's bytes to the socket; the buffer is left empty. */
static int conn_write(struct wlm_http_conn *conn, struct wlm_buf *b)
{
    if (conn->ssl) {
        size_t off = 0;
        while (off < b->len) {
            size_t chunk = b->len - off > (1u << 30) ? (1u << 30) : b->len - off;
            int k = SSL_write(conn->ssl, b->data + off, (int)chunk);
            if (k <= 0) {
                wlm_buf_fini(b);
                conn_close(conn);
                return -EPROTO;
            }
            off += (size_t)k;
        }
        wlm_buf_fini(b);
        return conn_tls_flush(conn);
    }
    struct http_wreq *wr = malloc(sizeof(*wr));
    if (!wr) {
        conn_close(conn);
        return -ENOMEM;
    }
    size_t len = b->len;
    wr->data = wlm_buf_steal(b);
    uv_buf_t ub = uv_buf_init(wr->data, (unsigned)len);
    int rc = uv_write(&wr->w, (uv_stream_t *)&conn->tcp, &ub, 1, write_cb);
    if (rc) {
        free(wr->data);
        free(wr);
        conn_close(conn);
    }
    return rc;
}

static void close_cb(uv_handle_t *h);

static void server_maybe_done(struct wlm_http_server *srv)
{
    if (!srv->closing || srv->nconns || srv->listener_open)
        return;
    while (srv->orphans) {
        struct http_sreq *r = srv->orphans;
        orphan_remove(srv, r);
        sreq_free(r);
    }
    for (size_t i = 0; i < srv->nroutes; i++) {
        struct http_route *rt = &srv->routes[i];
        free(rt->method);
        free(rt->pattern);
        for (size_t j = 0; j < rt->nsegs; j++)
            free(rt->segs[j]);
        free(rt->segs);
    }
    free(srv->routes);
    free(srv->host);
    free(srv->token);
    free(srv->tls_cert);
    free(srv->tls_key);
    SSL_CTX_free(srv->tls_ctx);
    void (*done)(void *) = srv->done;
    void *ud = srv->done_ud;
    free(srv);
    if (done)
        done(ud);
}

static void close_cb(uv_handle_t *h)
{
    struct wlm_http_conn *conn = h->data;
    if (--conn->handles > 0)
        return;
    struct wlm_http_server *srv = conn->srv;
    if (conn->prev)
        conn->prev->next = conn->next;
    else
        srv->conns = conn->next;
    if (conn->next)
        conn->next->prev = conn->prev;
    srv->nconns--;
    wlm_buf_fini(&conn->inbuf);
    wlm__http_hdr_acc_fini(&conn->acc);
    if (conn->ssl)
        SSL_free(conn->ssl);
    free(conn);
    server_maybe_done(srv);
}

static void conn_close(struct wlm_http_conn *conn)
{
    if (conn->closing)
        return;
    conn->closing = 1;
    struct wlm_http_server *srv = conn->srv;
    uv_timer_stop(&conn->timer);
    uv_read_stop((uv_stream_t *)&conn->tcp);
    sreq_free(conn->cur);
    conn->cur = NULL;
    while (conn->qhead) {
        struct http_sreq *r = conn->qhead;
        queue_remove(conn, r);
        if (r->state != SREQ_HANDLING && r->state != SREQ_STREAMING) {
            sreq_free(r);
            continue;
        }
        /* The handler still holds it. */
        r->orphan = 1;
        r->pub.conn = NULL;
        r->next = srv->orphans;
        r->prev = NULL;
        if (srv->orphans)
            srv->orphans->prev = r;
        srv->orphans = r;
        if (r->pub.on_abort) {
            r->in_abort = 1;
            r->pub.on_abort(&r->pub);
            orphan_remove(srv, r);
            sreq_free(r);
        }
    }
    uv_close((uv_handle_t *)&conn->tcp, close_cb);
    uv_close((uv_handle_t *)&conn->timer, close_cb);
}

static void shutdown_cb(uv_shutdown_t *sr, int status)
{
    struct wlm_http_conn *conn = sr->handle->data;
    if (status < 0)
        conn_close(conn);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct wlm_http_conn *conn = h->data;
    *buf = uv_buf_init(conn->srv->rbuf, sizeof(conn->srv->rbuf));
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void conn_start_reading(struct wlm_http_conn *conn)
{
    if (conn->reading || conn->closing || conn->peer_eof)
        return;
    if (uv_read_start((uv_stream_t *)&conn->tcp, alloc_cb, read_cb) == 0)
        conn->reading = 1;
    else
        conn_close(conn);
}

static void conn_stop_reading(struct wlm_http_conn *conn)
{
    if (conn->reading)
        uv_read_stop((uv_stream_t *)&conn->tcp);
    conn->reading = 0;
}

/* All responses are out and no more requests will come: half-close, then
 * discard what the peer still sends for a moment so that it reads our last
 * response rather than a connection reset. */
static void conn_finish(struct wlm_http_conn *conn)
{
    if (conn->closing || conn->draining)
        return;
    sreq_free(conn->cur);
    conn->cur = NULL;
    if (conn->peer_eof) {
        conn_close(conn);
        return;
    }
    conn->draining = 1;
    if (conn->ssl && conn->tls_up) { /* close_notify before the TCP half-close */
        SSL_shutdown(conn->ssl);
        if (conn_tls_flush(conn))
            return;
    }
    if (uv_shutdown(&conn->shut, (uv_stream_t *)&conn->tcp, shutdown_cb)) {
        conn_close(conn);
        return;
    }
    conn_start_reading(conn);
    conn->tmode = T_DRAIN;
    uv_timer_start(&conn->timer, timer_cb, HTTP_DRAIN_MS, 0);
}

static void conn_flush(struct wlm_http_conn *conn)
{
    struct http_sreq *r;
    while (!conn->closing && (r = conn->qhead)) {
        if (r->out.len && conn_write(conn, &r->out))
            return;
        if (r->state != SREQ_DONE)
            break;
        queue_remove(conn, r);
        int close_after = r->close_after;
        sreq_free(r);
        if (close_after) {
            conn->final = 1;
            /* Nothing after a closing response may be sent. */
            while (conn->qhead) {
                struct http_sreq *x = conn->qhead;
                queue_remove(conn, x);
                if (x->state == SREQ_DONE || x->state == SREQ_PARSING) {
                    sreq_free(x);
                } else {
                    x->close_after = 1; /* cannot happen: final stops parsing */
                    queue_push(conn, x);
                    break;
                }
            }
            break;
        }
    }
    if (conn->closing)
        return;
    if (conn->final && conn->nq == 0) {
        conn_finish(conn);
        return;
    }
    conn_resume(conn);
    conn_update_timer(conn);
}

/* Queue a final error response in order and stop parsing. */
static void conn_reject(struct wlm_http_conn *conn, int status, const char *error,
                        const char *detail)
{
    if (conn->closing || conn->final)
        return;
    struct http_sreq *r = conn->cur;
    conn->cur = NULL;
    if (!r)
        r = sreq_new(conn);
    if (!r) {
        conn_close(conn);
        return;
    }
    conn->final = 1;
    r->close_after = 1;
    r->state = SREQ_HANDLING;
    queue_push(conn, r);
    respond_error_hdr(&r->pub, status, NULL, error, detail);
}

static void conn_update_timer(struct wlm_http_conn *conn)
{
    if (conn->closing || conn->draining || conn->tmode == T_KILL)
        return;
    struct wlm_http_server *srv = conn->srv;
    if (conn->cur && !conn->cur->headers_done) {
        if (conn->tmode != T_HEADER) {
            conn->tmode = T_HEADER;
            uv_timer_start(&conn->timer, timer_cb, srv->header_timeout_ms, 0);
        }
    } else if (conn->nq > 0 || conn->final) {
        conn->tmode = T_NONE;
        uv_timer_stop(&conn->timer);
    } else {
        conn->tmode = T_IDLE;
        uv_timer_start(&conn->timer, timer_cb, srv->idle_timeout_ms, 0);
    }
}

static void timer_cb(uv_timer_t *t)
{
    struct wlm_http_conn *conn = t->data;
    switch (conn->tmode) {
    case T_HEADER: {
        char detail[96];
        snprintf(detail, sizeof(detail), "request header not complete within %u ms",
                 conn->srv->header_timeout_ms);
        conn->tmode = T_NONE;
        conn_reject(conn, 408, "timeout", detail);
        break;
    }
    case T_IDLE:
    case T_DRAIN:
    case T_KILL: conn_close(conn); break;
    case T_NONE: break;
    }
}

/* ---------------------------------------------------------------- routing */

/* Split a raw path into raw segments (pointers into a copy). */
static int split_path(const char *path, char **copy, char ***segs, size_t *nsegs)
{
    *copy = strdup(path[0] == '/' ? path + 1 : path);
    if (!*copy)
        return -ENOMEM;
    size_t n = (*copy)[0] ? 1 : 0;
    for (const char *p = *copy; *p; p++)
        n += *p == '/';
    *segs = calloc(n ? n : 1, sizeof(char *));
    if (!*segs) {
        free(*copy);
        return -ENOMEM;
    }
    size_t i = 0;
    if (n) {
        char *p = *copy;
        (*segs)[i++] = p;
        for (; *p; p++)
            if (*p == '/') {
                *p = '\0';
                (*segs)[i++] = p + 1;
            }
    }
    *nsegs = n;
    return 0;
}

static int route_match(const struct http_route *rt, char **segs, size_t nsegs,
                       struct wlm_http_req *req, int capture)
{
    if (rt->wildcard ? nsegs < rt->nsegs : nsegs != rt->nsegs)
        return 0;
    for (size_t i = 0; i < rt->nsegs; i++)
        if (rt->segs[i][0] != ':' && strcmp(rt->segs[i], segs[i]) != 0)
            return 0;
    if (!capture)
        return 1;
    for (size_t i = 0; i < rt->nsegs && req->nparams < HTTP_MAX_PARAMS; i++)
        if (rt->segs[i][0] == ':')
            req->params[req->nparams++] = strdup(segs[i]);
    if (rt->wildcard && req->nparams < HTTP_MAX_PARAMS) {
        /* The suffix matched by "*", segments re-joined with '/'. */
        struct wlm_buf b;
        wlm_buf_init(&b);
        for (size_t i = rt->nsegs; i < nsegs; i++)
            wlm_buf_printf(&b, "%s%s", i > rt->nsegs ? "/" : "", segs[i]);
        req->params[req->nparams++] = wlm_buf_steal(&b);
    }
    return 1;
}

static int method_ok(const struct http_route *rt, const char *method)
{
    return !rt->method || strcmp(rt->method, method) == 0 ||
           (strcmp(method, "HEAD") == 0 && strcmp(rt->method, "GET") == 0);
}

static void dispatch(struct http_sreq *r)
{
    struct wlm_http_req *req = &r->pub;
    struct wlm_http_server *srv = r->srv;
    r->state = SREQ_HANDLING;

    if (srv->metrics && strcmp(req->path, "/metrics") == 0 &&
        (strcmp(req->method, "GET") == 0 || r->is_head)) {
        char *text = wlm_metrics_render(srv->metrics);
        if (!text) {
            respond_error_hdr(req, 500, NULL, "internal", "could not render metrics");
            return;
        }
        wlm_http_respond(req, 200, "text/plain; version=0.0.4", NULL, text, strlen(text));
        free(text);
        return;
    }

    /* Segments are decoded one by one so that an encoded '/' stays inside
     * its segment. */
    char *copy = NULL, **raw = NULL;
    size_t nsegs = 0;
    const char *rawpath = req->url;
    struct http_parser_url u;
    http_parser_url_init(&u);
    char *pathbuf = NULL;
    if (http_parser_parse_url(req->url, strlen(req->url), 0, &u) == 0 &&
        (u.field_set & (1 << UF_PATH)))
        pathbuf = strndup(req->url + u.field_data[UF_PATH].off, u.field_data[UF_PATH].len);
    else
        pathbuf = strdup("/");
    rawpath = pathbuf ? pathbuf : "/";
    int rc = split_path(rawpath, &copy, &raw, &nsegs);
    free(pathbuf);
    if (rc) {
        respond_error_hdr(req, 500, NULL, "internal", "out of memory");
        return;
    }
    char **segs = calloc(nsegs ? nsegs : 1, sizeof(char *));
    int bad = !segs;
    for (size_t i = 0; !bad && i < nsegs; i++) {
        segs[i] = wlm__http_pct_decode(raw[i], strlen(raw[i]), 0);
        bad = !segs[i];
    }
    free(copy);
    free(raw);

    const struct http_route *found = NULL;
    int path_matched = 0;
    struct wlm_buf allow;
    wlm_buf_init(&allow);
    for (size_t i = 0; !bad && i < srv->nroutes; i++) {
        const struct http_route *rt = &srv->routes[i];
        if (!route_match(rt, segs, nsegs, req, 0))
            continue;
        path_matched = 1;
        if (method_ok(rt, req->method)) {
            found = rt;
            route_match(rt, segs, nsegs, req, 1);
            break;
        }
        if (!strstr(allow.data ? allow.data : "", rt->method)) {
            wlm_buf_printf(&allow, "%s%s", allow.len ? ", " : "Allow: ", rt->method);
            if (strcmp(rt->method, "GET") == 0)
                wlm_buf_printf(&allow, ", HEAD");
        }
    }
    for (size_t i = 0; segs && i < nsegs; i++)
        free(segs[i]);
    free(segs);

    if (bad) {
        wlm_buf_fini(&allow);
        respond_error_hdr(req, 400, NULL, "invalid", "malformed percent-encoding in the path");
        return;
    }
    if (!found) {
        if (path_matched) {
            char detail[128];
            snprintf(detail, sizeof(detail), "method %s not allowed here", req->method);
            respond_error_hdr(req, 405, allow.data, "method_not_allowed", detail);
        } else {
            respond_error_hdr(req, 404, NULL, "not_found", "no such path");
        }
        wlm_buf_fini(&allow);
        return;
    }
    wlm_buf_fini(&allow);

    req->route = found->pattern;
    if (found->auth && srv->auth.check) {
        const char *h = wlm_http_req_header(req, "Authorization");
        const char *bearer = NULL;
        if (h && strncasecmp(h, "Bearer ", 7) == 0) {
            bearer = h + 7;
            while (*bearer == ' ')
                bearer++;
        }
        char why[256] = "";
        r->audited = 1;
        int st = srv->auth.check(srv->auth.ud, req, bearer, why, sizeof why);
        if (st == 401) {
            respond_error_hdr(req, 401, "WWW-Authenticate: Bearer realm=\"wlm\"", "unauthorized",
                              why[0]   ? why
                              : bearer ? "invalid bearer token"
                                       : "missing bearer token");
            return;
        }
        if (st == 404) { /* not for this caller's eyes: as if it did not exist */
            respond_error_hdr(req, 404, NULL, "not_found", why[0] ? why : "no such object");
            return;
        }
        if (st) {
            respond_error_hdr(req, 403, NULL, "forbidden", why[0] ? why : "not allowed");
            return;
        }
    } else if (found->auth && srv->token && srv->token[0]) {
        const char *h = wlm_http_req_header(req, "Authorization");
        int ok = 0;
        if (h && strncasecmp(h, "Bearer ", 7) == 0) {
            const char *t = h + 7;
            while (*t == ' ')
                t++;
            ok = wlm_secret_equal(t, srv->token);
        }
        if (!ok) {
            respond_error_hdr(req, 401, "WWW-Authenticate: Bearer realm=\"wlm\"", "unauthorized",
                              h ? "invalid bearer token" : "missing bearer token");
            return;
        }
        wlm_strlcpy(req->principal.name, "token", sizeof req->principal.name);
        wlm_strlcpy(req->principal.role, "admin", sizeof req->principal.role);
    }
    found->fn(req, found->ud);
}

/* ---------------------------------------------------------------- parser callbacks */

static int over_header_limit(struct wlm_http_conn *conn, size_t add, int in_url)
{
    struct http_sreq *r = conn->cur;
    r->hdr_bytes += add;
    if (r->hdr_bytes <= conn->srv->max_header_bytes)
        return 0;
    char detail[96];
    snprintf(detail, sizeof(detail), "request %s larger than %zu bytes",
             in_url ? "target" : "header", conn->srv->max_header_bytes);
    if (in_url)
        conn_reject(conn, 414, "uri_too_long", detail);
    else
        conn_reject(conn, 431, "header_too_large", detail);
    return 1;
}

/* One complete header line arrived: store it and check framing headers. */
static int finish_header(struct wlm_http_conn *conn)
{
    struct wlm__http_hdr_acc *a = &conn->acc;
    if (!a->in_value)
        return 0;
    struct http_sreq *r = conn->cur;
    const char *name = a->field.data ? a->field.data : "";
    const char *value = a->value.data ? a->value.data : "";
    /* The packaged http-parser is built lenient and accepts spaces and
     * other separators in field names; RFC 9110 allows only tchars. */
    if (a->field.len == 0 || strspn(name, "!#$%&'*+-.^_`|~0123456789"
                                          "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") !=
                                 a->field.len) {
        conn_reject(conn, 400, "invalid", "malformed header field name");
        return -1;
    }
    if (r->pub.nheaders >= HTTP_MAX_HEADERS) {
        conn_reject(conn, 431, "header_too_large", "too many header fields");
        return -1;
    }
    if (wlm__http_headers_add(&r->pub.headers, &r->pub.nheaders, name, a->field.len, value,
                              a->value.len)) {
        conn_close(conn);
        return -1;
    }
    if (strcasecmp(name, "content-length") == 0) {
        if (r->seen_cl && strcmp(r->cl_value, value) != 0) {
            conn_reject(conn, 400, "invalid", "conflicting Content-Length headers");
            return -1;
        }
        if (!r->seen_cl)
            r->cl_value = strdup(value);
        r->seen_cl = 1;
    } else if (strcasecmp(name, "transfer-encoding") == 0) {
        r->seen_te = 1;
    }
    wlm__http_hdr_acc_reset(a);
    return 0;
}

static int on_message_begin(http_parser *p)
{
    struct wlm_http_conn *conn = p->data;
    if (conn->closing || conn->final)
        return -1;
    conn->cur = sreq_new(conn);
    if (!conn->cur) {
        conn_close(conn);
        return -1;
    }
    wlm__http_hdr_acc_reset(&conn->acc);
    conn_update_timer(conn);
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct wlm_http_conn *conn = p->data;
    if (over_header_limit(conn, len, 1))
        return -1;
    if (wlm_buf_append(&conn->cur->url, at, len)) {
        conn_close(conn);
        return -1;
    }
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct wlm_http_conn *conn = p->data;
    if (over_header_limit(conn, len + 4, 0))
        return -1;
    if (conn->acc.in_value && finish_header(conn))
        return -1;
    if (wlm_buf_append(&conn->acc.field, at, len)) {
        conn_close(conn);
        return -1;
    }
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct wlm_http_conn *conn = p->data;
    if (over_header_limit(conn, len, 0))
        return -1;
    conn->acc.in_value = 1;
    if (wlm_buf_append(&conn->acc.value, at, len)) {
        conn_close(conn);
        return -1;
    }
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    struct wlm_http_conn *conn = p->data;
    struct wlm_http_server *srv = conn->srv;
    if (finish_header(conn))
        return -1;
    struct http_sreq *r = conn->cur;
    struct wlm_http_req *req = &r->pub;
    r->headers_done = 1;
    req->method = http_method_str((enum http_method)p->method);
    r->is_head = p->method == HTTP_HEAD;
    req->http_major = p->http_major;
    req->http_minor = p->http_minor;
    req->keep_alive = http_should_keep_alive(p);
    req->url = wlm_buf_steal(&r->url);
    if (!req->url) {
        conn_close(conn);
        return -1;
    }

    if (r->seen_cl && r->seen_te) {
        conn_reject(conn, 400, "invalid", "both Content-Length and Transfer-Encoding present");
        return -1;
    }
    if (p->http_major != 1) {
        conn_reject(conn, 505, "invalid", "only HTTP/1.x is supported");
        return -1;
    }

    struct http_parser_url u;
    http_parser_url_init(&u);
    if (http_parser_parse_url(req->url, strlen(req->url), p->method == HTTP_CONNECT, &u) != 0 ||
        !(u.field_set & (1 << UF_PATH))) {
        conn_reject(conn, 400, "invalid", "malformed request target");
        return -1;
    }
    req->path = wlm__http_pct_decode(req->url + u.field_data[UF_PATH].off,
                                     u.field_data[UF_PATH].len, 0);
    if (!req->path) {
        conn_reject(conn, 400, "invalid", "malformed percent-encoding in the path");
        return -1;
    }
    if (u.field_set & (1 << UF_QUERY))
        req->query = strndup(req->url + u.field_data[UF_QUERY].off, u.field_data[UF_QUERY].len);

    if ((p->flags & F_CONTENTLENGTH) && p->content_length > srv->max_body_bytes) {
        char detail[96];
        snprintf(detail, sizeof(detail), "request body larger than %zu bytes",
                 srv->max_body_bytes);
        conn_reject(conn, 413, "body_too_large", detail);
        return -1;
    }

    /* Answer "Expect: 100-continue" only when nothing is queued ahead of this
     * request, since an interim response must not overtake earlier ones; a
     * client that gets none sends the body after its own short wait. */
    const char *expect = wlm_http_req_header(req, "Expect");
    if (expect && strcasecmp(expect, "100-continue") == 0 && conn->nq == 0 && req->http_minor >= 1 &&
        ((p->flags & F_CHUNKED) || p->content_length > 0)) {
        struct wlm_buf b;
        wlm_buf_init(&b);
        if (wlm_buf_printf(&b, "HTTP/1.1 100 Continue\r\n\r\n") == 0)
            conn_write(conn, &b);
        wlm_buf_fini(&b);
        if (conn->closing)
            return -1;
    }
    conn_update_timer(conn);
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct wlm_http_conn *conn = p->data;
    struct http_sreq *r = conn->cur;
    if (r->body.len + len > conn->srv->max_body_bytes) {
        char detail[96];
        snprintf(detail, sizeof(detail), "request body larger than %zu bytes",
                 conn->srv->max_body_bytes);
        conn_reject(conn, 413, "body_too_large", detail);
        return -1;
    }
    if (wlm_buf_append(&r->body, at, len)) {
        conn_close(conn);
        return -1;
    }
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct wlm_http_conn *conn = p->data;
    struct http_sreq *r = conn->cur;
    conn->cur = NULL;
    r->pub.body_len = r->body.len;
    r->pub.body = wlm_buf_steal(&r->body);
    if (!r->pub.body) {
        sreq_free(r);
        conn_close(conn);
        return -1;
    }
    if (!r->pub.keep_alive || p->upgrade) {
        r->close_after = 1;
        conn->final = 1;
    }
    queue_push(conn, r);
    dispatch(r); /* may respond, and free r, right away */
    if (conn->closing || conn->final)
        return -1; /* stop parsing */
    if (conn->nq >= HTTP_MAX_PIPELINE) {
        http_parser_pause(p, 1);
        conn->paused = 1;
    }
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* Feed bytes to the parser. Returns how many were consumed. */
static size_t conn_parse(struct wlm_http_conn *conn, const char *data, size_t len)
{
    conn->in_parse = 1;
    size_t n = http_parser_execute(&conn->parser, &parser_settings, data, len);
    conn->in_parse = 0;
    if (conn->closing || conn->final)
        return len;
    enum http_errno e = HTTP_PARSER_ERRNO(&conn->parser);
    if (e == HPE_PAUSED)
        return n;
    if (e != HPE_OK) {
        char detail[160];
        snprintf(detail, sizeof(detail), "malformed request: %s", http_errno_description(e));
        conn_reject(conn, e == HPE_HEADER_OVERFLOW ? 431 : 400,
                    e == HPE_HEADER_OVERFLOW ? "header_too_large" : "invalid", detail);
        return len;
    }
    return n;
}

/* Continue parsing input held back while the pipeline was full. */
static void conn_resume(struct wlm_http_conn *conn)
{
    while (conn->paused && !conn->in_parse && !conn->closing && !conn->final &&
           conn->nq < HTTP_MAX_PIPELINE) {
        conn->paused = 0;
        http_parser_pause(&conn->parser, 0);
        size_t avail = conn->inbuf.len - conn->inoff;
        size_t n = avail ? conn_parse(conn, conn->inbuf.data + conn->inoff, avail) : 0;
        if (conn->closing)
            return;
        conn->inoff += n;
        if (!conn->paused || conn->inoff >= conn->inbuf.len) {
            wlm_buf_fini(&conn->inbuf);
            conn->inoff = 0;
        }
    }
    if (!conn->paused && !conn->final && !conn->closing)
        conn_start_reading(conn);
}

static void conn_on_eof(struct wlm_http_conn *conn)
{
    conn_stop_reading(conn);
    if (conn->draining || conn->nq == 0) {
        conn_close(conn);
        return;
    }
    /* EOF cannot tell a half-close from a peer that went away. Treat it as
     * going away when a handler still works on a request (so long polls and
     * streams are aborted, not left running), but let responses that are
     * already complete go out first. */
    for (struct http_sreq *r = conn->qhead; r; r = r->next)
        if (r->state != SREQ_DONE) {
            conn_close(conn);
            return;
        }
    conn->peer_eof = 1;
    conn->final = 1;
    sreq_free(conn->cur);
    conn->cur = NULL;
    conn_update_timer(conn);
}

/* Plaintext request bytes, from the socket or out of TLS. */
static void conn_input(struct wlm_http_conn *conn, const char *data, size_t nread)
{
    if (nread == 0 || conn->closing || conn->draining || conn->final)
        return; /* after a final response, input is discarded */
    size_t n = conn_parse(conn, data, nread);
    if (conn->closing)
        return;
    if (conn->paused && n < nread) {
        if (wlm_buf_append(&conn->inbuf, data + n, nread - n)) {
            conn_close(conn);
            return;
        }
        conn_stop_reading(conn);
        conn_resume(conn); /* responses may have completed meanwhile */
        if (conn->closing)
            return;
    }
    conn_update_timer(conn);
}

/* Ciphertext from the socket: finish the handshake, then decrypt everything
 * available. `data` may be the server's read buffer, which is reused for the
 * plaintext once OpenSSL holds the ciphertext. */
static void conn_tls_input(struct wlm_http_conn *conn, char *data, size_t n)
{
    if (conn->draining || conn->final)
        return;
    if (!conn->tls_up && !conn->tls_seen && n >= 4 && data[0] >= 'A' && data[0] <= 'Z' &&
        (!memcmp(data, "GET ", 4) || !memcmp(data, "POST", 4) || !memcmp(data, "PUT ", 4) ||
         !memcmp(data, "HEAD", 4) || !memcmp(data, "DELE", 4) || !memcmp(data, "OPTI", 4))) {
        /* Plain HTTP on the HTTPS port: say so in plain HTTP, not with a reset. */
        static const char msg[] =
            "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
            "Connection: close\r\nContent-Length: 75\r\n\r\n"
            "{\"error\":\"invalid\",\"detail\":\"this port speaks HTTPS: use an https:// URL\"}\n";
        char *copy = malloc(sizeof msg - 1);
        if (!copy) {
            conn_close(conn);
            return;
        }
        memcpy(copy, msg, sizeof msg - 1);
        if (conn_write_raw(conn, copy, sizeof msg - 1))
            return;
        conn->final = 1;
        conn_finish(conn);
        return;
    }
    conn->tls_seen = 1;
    if (BIO_write(SSL_get_rbio(conn->ssl), data, (int)n) != (int)n) {
        conn_close(conn);
        return;
    }
    if (!conn->tls_up) {
        ERR_clear_error();
        int rc = SSL_do_handshake(conn->ssl);
        if (conn_tls_flush(conn))
            return;
        if (rc != 1) {
            int e = SSL_get_error(conn->ssl, rc);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                return;
            char why[256];
            wlm_tls_reason(why, sizeof why);
            wlm_debug("http", "TLS handshake failed", "peer=%s reason=\"%s\"", conn->peer, why);
            conn_close(conn);
            return;
        }
        conn->tls_up = 1;
    }
    char *buf = conn->srv->rbuf;
    while (!conn->closing && !conn->draining && !conn->final) {
        ERR_clear_error();
        int k = SSL_read(conn->ssl, buf, (int)sizeof conn->srv->rbuf);
        if (k <= 0) {
            int e = SSL_get_error(conn->ssl, k);
            if (conn_tls_flush(conn))
                return;
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                return;
            if (e == SSL_ERROR_ZERO_RETURN) { /* close_notify: like EOF */
                conn_on_eof(conn);
                return;
            }
            conn_close(conn);
            return;
        }
        conn_input(conn, buf, (size_t)k);
    }
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct wlm_http_conn *conn = s->data;
    if (nread < 0) {
        if (nread == UV_EOF)
            conn_on_eof(conn);
        else
            conn_close(conn);
        return;
    }
    if (conn->ssl) {
        if (nread > 0 && !conn->closing)
            conn_tls_input(conn, buf->base, (size_t)nread);
        return;
    }
    conn_input(conn, buf->base, (size_t)nread);
}

/* ---------------------------------------------------------------- server */

static void on_connection(uv_stream_t *ls, int status)
{
    struct wlm_http_server *srv = ls->data;
    if (status < 0 || srv->closing)
        return;
    struct wlm_http_conn *conn = calloc(1, sizeof(*conn));
    if (!conn)
        return;
    conn->srv = srv;
    wlm_buf_init(&conn->inbuf);
    wlm__http_hdr_acc_init(&conn->acc);
    uv_tcp_init(srv->loop, &conn->tcp);
    uv_timer_init(srv->loop, &conn->timer);
    conn->tcp.data = conn;
    conn->timer.data = conn;
    conn->handles = 2;
    conn->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = conn;
    srv->conns = conn;
    srv->nconns++;
    if (uv_accept(ls, (uv_stream_t *)&conn->tcp)) {
        conn_close(conn);
        return;
    }
    struct sockaddr_storage ss;
    int sl = sizeof(ss);
    if (uv_tcp_getpeername(&conn->tcp, (struct sockaddr *)&ss, &sl) == 0) {
        char ip[48] = "?";
        int port = 0;
        if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            uv_ip6_name(a, ip, sizeof(ip));
            port = ntohs(a->sin6_port);
            snprintf(conn->peer, sizeof(conn->peer), "[%s]:%d", ip, port);
        } else {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;
            uv_ip4_name(a, ip, sizeof(ip));
            port = ntohs(a->sin_port);
            snprintf(conn->peer, sizeof(conn->peer), "%s:%d", ip, port);
        }
    }
    uv_tcp_nodelay(&conn->tcp, 1);
    if (srv->tls_ctx && !(conn->ssl = wlm_tls_session(srv->tls_ctx, 1, NULL))) {
        conn_close(conn);
        return;
    }
    http_parser_init(&conn->parser, HTTP_REQUEST);
    conn->parser.data = conn;
    if (srv->nconns > srv->max_connections) {
        conn_reject(conn, 503, "unavailable", "too many connections");
        return;
    }
    conn_start_reading(conn);
    conn_update_timer(conn);
}

struct wlm_http_server *wlm_http_server_new(uv_loop_t *loop, const struct wlm_http_server_opts *o)
{
    struct wlm_http_server_opts def = {0};
    if (!o)
        o = &def;
    struct wlm_http_server *srv = calloc(1, sizeof(*srv));
    if (!srv)
        return NULL;
    srv->loop = loop;
    srv->host = strdup(o->host && o->host[0] ? o->host : "127.0.0.1");
    srv->token = o->token && o->token[0] ? strdup(o->token) : NULL;
    srv->port = o->port;
    srv->max_header_bytes = o->max_header_bytes ? o->max_header_bytes : 16 * 1024;
    srv->max_body_bytes = o->max_body_bytes ? o->max_body_bytes : 8 * 1024 * 1024;
    srv->header_timeout_ms = o->header_timeout_ms ? o->header_timeout_ms : 10000;
    srv->idle_timeout_ms = o->idle_timeout_ms ? o->idle_timeout_ms : 60000;
    srv->max_connections = o->max_connections ? o->max_connections : 4096;
    srv->tls_cert = o->tls_cert && o->tls_cert[0] ? strdup(o->tls_cert) : NULL;
    srv->tls_key = o->tls_key && o->tls_key[0] ? strdup(o->tls_key) : NULL;
    if (!srv->host || (o->token && o->token[0] && !srv->token) ||
        uv_tcp_init(loop, &srv->listener)) {
        free(srv->host);
        free(srv->token);
        free(srv->tls_cert);
        free(srv->tls_key);
        free(srv);
        return NULL;
    }
    srv->listener.data = srv;
    srv->listener_open = 1;
    return srv;
}

int wlm_http_server_route(struct wlm_http_server *s, const char *method, const char *pattern,
                          int auth, wlm_http_handler_fn fn, void *ud)
{
    if (!s || !pattern || pattern[0] != '/' || !fn)
        return -WLM_EINVAL;
    struct http_route rt = {.auth = auth, .fn = fn, .ud = ud, .pattern = strdup(pattern)};
    if (!rt.pattern)
        return -ENOMEM;
    char *copy;
    char **raw;
    size_t n;
    if (split_path(pattern, &copy, &raw, &n))
        return -ENOMEM;
    int rc = 0;
    size_t nparams = 0;
    if (n && strcmp(raw[n - 1], "*") == 0) {
        rt.wildcard = 1;
        n--;
        nparams++;
    }
    rt.segs = calloc(n ? n : 1, sizeof(char *));
    rt.method = method ? strdup(method) : NULL;
    if (!rt.segs || (method && !rt.method))
        rc = -ENOMEM;
    for (size_t i = 0; !rc && i < n; i++) {
        if (strcmp(raw[i], "*") == 0)
            rc = -WLM_EINVAL; /* "*" only at the end */
        nparams += raw[i][0] == ':';
        rt.segs[i] = strdup(raw[i]);
        if (!rt.segs[i] && !rc)
            rc = -ENOMEM;
        rt.nsegs = i + 1;
    }
    if (!rc && nparams > HTTP_MAX_PARAMS)
        rc = -WLM_ELIMIT;
    free(copy);
    free(raw);
    struct http_route *routes = NULL;
    if (!rc) {
        routes = realloc(s->routes, (s->nroutes + 1) * sizeof(*routes));
        if (!routes)
            rc = -ENOMEM;
    }
    if (rc) {
        for (size_t i = 0; i < rt.nsegs; i++)
            free(rt.segs[i]);
        free(rt.segs);
        free(rt.method);
        free(rt.pattern);
        return rc;
    }
    s->routes = routes;
    s->routes[s->nroutes++] = rt;
    return 0;
}

void wlm_http_server_set_metrics(struct wlm_http_server *s, struct wlm_metrics *m)
{
    if (!s)
        return;
    s->metrics = m;
    memset(s->by_class, 0, sizeof(s->by_class));
    s->latency = NULL;
    if (!m)
        return;
    static const char *const classes[5] = {"code=\"1xx\"", "code=\"2xx\"", "code=\"3xx\"",
                                           "code=\"4xx\"", "code=\"5xx\""};
    for (int i = 0; i < 5; i++)
        s->by_class[i] = wlm_metrics_counter(m, "wlm_http_requests_total",
                                             "HTTP requests answered, by status class", classes[i]);
    static const double bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                    0.05,   0.1,   0.25,   0.5,   1,    2.5};
    s->latency = wlm_metrics_histogram(m, "wlm_http_request_duration_seconds",
                                       "Time from the first request byte to the complete response",
                                       NULL, bounds, WLM_ARRAY_LEN(bounds));
}

int wlm_http_server_listen(struct wlm_http_server *s, struct wlm_error *err)
{
    if (!s)
        return wlm_error_set(err, WLM_EINVAL, "listen: no server");
    if ((s->tls_cert || s->tls_key) && !s->tls_ctx) {
        if (!s->tls_cert || !s->tls_key)
            return wlm_error_setf(err, WLM_EINVAL, s->tls_cert ? "tls_key" : "tls_cert",
                                  "HTTPS needs both --tls-cert and --tls-key");
        s->tls_ctx = wlm_tls_server_ctx(s->tls_cert, s->tls_key, "--tls-cert", err);
        if (!s->tls_ctx)
            return err ? err->code : -WLM_EINVAL;
    }
    struct sockaddr_storage ss;
    if (uv_ip4_addr(s->host, s->port, (struct sockaddr_in *)&ss) &&
        uv_ip6_addr(s->host, s->port, (struct sockaddr_in6 *)&ss))
        return wlm_error_setf(err, WLM_EINVAL, "host",
                              "listen %s:%d: not a numeric IPv4 or IPv6 address", s->host, s->port);
    int rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&ss, 0);
    if (!rc)
        rc = uv_listen((uv_stream_t *)&s->listener, 511, on_connection);
    if (rc)
        return wlm_error_set(err, WLM_EIO, "listen %s:%d: %s", s->host, s->port, uv_strerror(rc));
    int sl = sizeof(ss);
    if (uv_tcp_getsockname(&s->listener, (struct sockaddr *)&ss, &sl) == 0)
        s->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                 : ((struct sockaddr_in *)&ss)->sin_port);
    return 0;
}

void wlm_http_server_set_auth(struct wlm_http_server *s, const struct wlm_http_auth *a)
{
    if (!s)
        return;
    if (a)
        s->auth = *a;
    else
        memset(&s->auth, 0, sizeof s->auth);
}

int wlm_host_is_loopback(const char *host)
{
    if (!host || !host[0])
        return 1; /* the default, 127.0.0.1 */
    return strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0 ||
           strcmp(host, "[::1]") == 0 || strcasecmp(host, "localhost") == 0;
}

int wlm_http_server_is_tls(const struct wlm_http_server *s)
{
    return s && s->tls_ctx != NULL;
}

int wlm_http_server_port(const struct wlm_http_server *s)
{
    return s ? s->port : 0;
}

static void listener_close_cb(uv_handle_t *h)
{
    struct wlm_http_server *srv = h->data;
    srv->listener_open = 0;
    server_maybe_done(srv);
}

void wlm_http_server_close(struct wlm_http_server *s, void (*done)(void *ud), void *ud)
{
    if (!s || s->closing)
        return;
    s->closing = 1;
    s->done = done;
    s->done_ud = ud;
    for (struct wlm_http_conn *c = s->conns; c; c = c->next) {
        /* Let a connection with nothing in progress finish writing what it
         * has (say, the response to the request that asked for the close). */
        if (c->nq == 0 && !c->closing && c->tcp.write_queue_size > 0) {
            c->final = 1;
            conn_finish(c);
        } else {
            conn_close(c);
        }
    }
    uv_close((uv_handle_t *)&s->listener, listener_close_cb);
}
