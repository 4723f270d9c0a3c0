/*
 * http_client.c - asynchronous HTTP/1.1 client on libuv + http-parser.
 *
 * Each request (creq) owns a timer for its deadline and is sent on a
 * connection (cconn) to its host:port: an idle keep-alive connection when one
 * exists, else a new one. One request at a time per connection (no
 * pipelining: a failure then never leaves us guessing which request the
 * server saw). Idle connections stay in the pool unreferenced, so they never
 * keep a loop alive, and are dropped when the server closes them. A request
 * sent on a reused connection that closes before any response byte is retried
 * once on a fresh connection: the server most likely timed the idle
 * connection out just as we sent.
 *
 * https:// URLs run TLS over memory BIOs (wlm_tls.h): the request is sent
 * once the handshake (with chain and host-name verification) is done, and
 * responses are decrypted before they reach the same parser. Connections are
 * pooled per scheme as well as host:port.
 *
 * Memory: the client and every creq/cconn are released only after their libuv
 * handles are closed, so callbacks that free the client from inside a
 * completion never leave a dangling pointer behind; the loop must run for the
 * release to complete.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>

#include "common.h"
#include "http_internal.h"
#include "wlm_tls.h"

#define CLIENT_MAX_IDLE_PER_HOST 8
#define CLIENT_MAX_BODY (256u * 1024 * 1024)

struct creq;

struct cconn {
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    struct wlm_http_client *c;
    struct cconn *next, *prev;
    char key[300]; /* "host:port" */
    http_parser parser;
    struct wlm__http_hdr_acc acc;
    struct creq *req; /* in flight, NULL when idle */
    int idle, closing, connected;
    int reused; /* has served a request before the current one */
    size_t nrecv; /* response bytes for the current request */
    int complete, keep_alive;
    struct wlm_http_header *headers;
    size_t nheaders;
    struct wlm_buf body;
    int https;
    SSL *ssl;        /* https: the session */
    int tls_up;      /* handshake done */
    int send_queued; /* send the request once the handshake is done */
};

struct creq {
    uv_timer_t timer;
    uv_getaddrinfo_t gai;
    struct addrinfo *ai, *ai_next; /* resolved addresses; the next to try */
    struct wlm_http_client *c;
    struct creq *next, *prev;
    char *host;
    int port;
    char key[300];
    int https;
    char *desc; /* "GET http://host:port/path" for messages */
    struct wlm_buf out;
    int is_head;
    unsigned timeout_ms;
    wlm_http_client_cb cb;
    void *ud;
    struct cconn *conn;
    int done, retried, gai_pending, timer_closed;
    int starting; /* inside wlm_http_client_request: report failures later */
    struct wlm_error early; /* failure to report from the first loop turn */
};

struct wlm_http_client {
    uv_loop_t *loop;
    struct cconn *conns;
    struct creq *reqs;
    struct mreq *mreqs; /* requests over several servers (or redirected) */
    size_t alive; /* creqs + cconns not yet released */
    int closing;
    SSL_CTX *tls_ctx; /* for https://; made on first use when not set */
};

static void creq_start(struct creq *r);
static void creq_timer(uv_timer_t *t);
static void creq_connect(struct creq *r, const struct sockaddr *sa);
static void cconn_close(struct cconn *conn);

/* ---------------------------------------------------------------- response helpers */

const char *wlm_http_response_header(const struct wlm_http_response *r, const char *name)
{
    return r ? wlm__http_headers_find(r->headers, r->nheaders, name) : NULL;
}

void wlm_http_response_fini(struct wlm_http_response *r)
{
    if (!r)
        return;
    wlm__http_headers_free(r->headers, r->nheaders);
    free(r->body);
    memset(r, 0, sizeof(*r));
}

/* ---------------------------------------------------------------- lifetime */

static void client_unref(struct wlm_http_client *c)
{
    if (--c->alive == 0 && c->closing) {
        SSL_CTX_free(c->tls_ctx);
        free(c);
    }
}

static void creq_maybe_free(struct creq *r)
{
    if (!r->timer_closed || r->gai_pending)
        return;
    struct wlm_http_client *c = r->c;
    if (r->ai)
        uv_freeaddrinfo(r->ai);
    free(r->host);
    free(r->desc);
    wlm_buf_fini(&r->out);
    free(r);
    client_unref(c);
}

static void creq_timer_closed(uv_handle_t *h)
{
    struct creq *r = h->data;
    r->timer_closed = 1;
    creq_maybe_free(r);
}

/* Deliver the outcome exactly once; the request is released afterwards. */
static void creq_finish(struct creq *r, const struct wlm_http_response *resp,
                        const struct wlm_error *err)
{
    if (r->done)
        return;
    r->done = 1;
    struct wlm_http_client *c = r->c;
    if (r->prev)
        r->prev->next = r->next;
    else
        c->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    if (r->conn) {
        r->conn->req = NULL;
        r->conn = NULL;
    }
    if (r->gai_pending)
        uv_cancel((uv_req_t *)&r->gai);
    uv_timer_stop(&r->timer);
    struct wlm_http_response none = {0};
    struct wlm_error ok = {0};
    if (r->cb)
        r->cb(resp ? resp : &none, err ? err : &ok, r->ud);
    uv_close((uv_handle_t *)&r->timer, creq_timer_closed);
}

static void creq_fail(struct creq *r, int code_abs, const char *fmt, ...) WLM_PRINTF(3, 4);
static void creq_fail(struct creq *r, int code_abs, const char *fmt, ...)
{
    struct wlm_error err;
    va_list ap;
    va_start(ap, fmt);
    char msg[sizeof(err.msg)];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    wlm_error_set(&err, code_abs, "%s", msg);
    if (r->starting) {
        /* Never call back from inside wlm_http_client_request. */
        if (r->conn) {
            r->conn->req = NULL;
            r->conn = NULL;
        }
        if (!r->early.code) {
            r->early = err;
            uv_timer_start(&r->timer, creq_timer, 0, 0);
        }
        return;
    }
    creq_finish(r, NULL, &err);
}

/* ---------------------------------------------------------------- connections */

static void cconn_closed(uv_handle_t *h)
{
    struct cconn *conn = h->data;
    struct wlm_http_client *c = conn->c;
    wlm__http_hdr_acc_fini(&conn->acc);
    wlm__http_headers_free(conn->headers, conn->nheaders);
    wlm_buf_fini(&conn->body);
    if (conn->ssl)
        SSL_free(conn->ssl);
    free(conn);
    client_unref(c);
}

static void cconn_unlink(struct cconn *conn)
{
    struct wlm_http_client *c = conn->c;
    if (conn->prev)
        conn->prev->next = conn->next;
    else if (c->conns == conn)
        c->conns = conn->next;
    if (conn->next)
        conn->next->prev = conn->prev;
    conn->next = conn->prev = NULL;
}

static void cconn_close(struct cconn *conn)
{
    if (conn->closing)
        return;
    conn->closing = 1;
    cconn_unlink(conn);
    if (conn->req) {
        struct creq *r = conn->req;
        creq_fail(r, WLM_EIO, "%s: connection to %s closed", r->desc, conn->key);
    }
    uv_close((uv_handle_t *)&conn->tcp, cconn_closed);
}

static void reset_response(struct cconn *conn)
{
    wlm__http_hdr_acc_reset(&conn->acc);
    wlm__http_headers_free(conn->headers, conn->nheaders);
    conn->headers = NULL;
    conn->nheaders = 0;
    wlm_buf_fini(&conn->body);
    conn->complete = 0;
    conn->keep_alive = 0;
    conn->nrecv = 0;
}

static int finish_header(struct cconn *conn)
{
    struct wlm__http_hdr_acc *a = &conn->acc;
    if (!a->in_value)
        return 0;
    int rc = wlm__http_headers_add(&conn->headers, &conn->nheaders, a->field.data, a->field.len,
                                   a->value.data, a->value.len);
    wlm__http_hdr_acc_reset(a);
    return rc;
}

static int cb_begin(http_parser *p)
{
    reset_response(p->data);
    return 0;
}

static int cb_field(http_parser *p, const char *at, size_t len)
{
    struct cconn *conn = p->data;
    if (conn->acc.in_value && finish_header(conn))
        return -1;
    return wlm_buf_append(&conn->acc.field, at, len) ? -1 : 0;
}

static int cb_value(http_parser *p, const char *at, size_t len)
{
    struct cconn *conn = p->data;
    conn->acc.in_value = 1;
    return wlm_buf_append(&conn->acc.value, at, len) ? -1 : 0;
}

static int cb_headers_complete(http_parser *p)
{
    struct cconn *conn = p->data;
    if (finish_header(conn))
        return -1;
    /* A HEAD response announces a length but carries no body. */
    return conn->req && conn->req->is_head ? 1 : 0;
}

static int cb_body(http_parser *p, const char *at, size_t len)
{
    struct cconn *conn = p->data;
    if (conn->body.len + len > CLIENT_MAX_BODY)
        return -1;
    return wlm_buf_append(&conn->body, at, len) ? -1 : 0;
}

static int cb_message_complete(http_parser *p)
{
    struct cconn *conn = p->data;
    conn->complete = 1;
    conn->keep_alive = http_should_keep_alive(p);
    /* Stop here: the completion runs once the parser has returned, because
     * the callback may start a request that reuses this connection. */
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings client_settings = {
    .on_message_begin = cb_begin,
    .on_header_field = cb_field,
    .on_header_value = cb_value,
    .on_headers_complete = cb_headers_complete,
    .on_body = cb_body,
    .on_message_complete = cb_message_complete,
};

static size_t idle_count(struct wlm_http_client *c, const char *key, int https)
{
    size_t n = 0;
    for (struct cconn *x = c->conns; x; x = x->next)
        n += x->idle && x->https == https && strcmp(x->key, key) == 0;
    return n;
}

static void cconn_complete(struct cconn *conn, int reusable)
{
    struct creq *r = conn->req;
    struct wlm_http_client *c = conn->c;
    struct wlm_http_response resp = {0};
    resp.status = conn->parser.status_code;
    resp.headers = conn->headers;
    resp.nheaders = conn->nheaders;
    resp.body_len = conn->body.len;
    resp.body = wlm_buf_steal(&conn->body);
    conn->headers = NULL;
    conn->nheaders = 0;
    r->conn = NULL;
    conn->req = NULL;
    if (reusable && conn->keep_alive && !c->closing &&
        idle_count(c, conn->key, conn->https) < CLIENT_MAX_IDLE_PER_HOST) {
        conn->idle = 1;
        uv_unref((uv_handle_t *)&conn->tcp);
    } else {
        cconn_close(conn);
    }
    creq_finish(r, &resp, NULL);
    wlm_http_response_fini(&resp);
}

static void cconn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    buf->base = malloc(suggested);
    buf->len = buf->base ? suggested : 0;
}

static void cconn_data(struct cconn *conn, const char *data, size_t nread);
static void cconn_send(struct cconn *conn);
static void cconn_tls_read(struct cconn *conn, const char *data, size_t n);

static void cconn_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct cconn *conn = s->data;
    struct creq *r = conn->req;
    if (nread == 0 || conn->closing) {
        free(buf->base);
        return;
    }
    if (nread > 0 && conn->ssl) {
        cconn_tls_read(conn, buf->base, (size_t)nread);
        free(buf->base);
        return;
    }
    if (nread > 0) {
        cconn_data(conn, buf->base, (size_t)nread);
        free(buf->base);
        return;
    }
    if (nread < 0) {
        free(buf->base);
        if (!r) {
            cconn_close(conn);
            return;
        }
        if (nread == UV_EOF && conn->nrecv > 0) {
            /* A body delimited by the end of the connection. */
            http_parser_execute(&conn->parser, &client_settings, NULL, 0);
            if (conn->complete) {
                cconn_complete(conn, 0);
                return;
            }
        }
        if (conn->reused && conn->nrecv == 0 && !r->retried) {
            r->retried = 1;
            r->conn = NULL;
            conn->req = NULL;
            cconn_close(conn);
            creq_start(r);
            return;
        }
        if (conn->ssl && !conn->tls_up) {
            creq_fail(r, WLM_EIO, "%s: TLS: the server closed the connection during the "
                      "handshake (is it serving plain HTTP?)", r->desc);
            cconn_close(conn);
            return;
        }
        creq_fail(r, WLM_EIO, "%s: %s", r->desc,
                  nread == UV_EOF ? "connection closed before the response was complete"
                                  : uv_strerror((int)nread));
        cconn_close(conn);
        return;
    }
}

/* Plaintext response bytes (from the socket or out of TLS). */
static void cconn_data(struct cconn *conn, const char *data, size_t nread)
{
    struct creq *r = conn->req;
    if (!r) {
        /* Bytes on an idle connection: the stream is out of step. */
        cconn_close(conn);
        return;
    }
    conn->nrecv += nread;
    size_t off = 0, n;
    for (;;) {
        n = http_parser_execute(&conn->parser, &client_settings, data + off, nread - off);
        off += n;
        /* An interim 1xx response (100 Continue, 103) precedes the real one. */
        int st = (int)conn->parser.status_code;
        if (!conn->complete || st < 100 || st > 199 || st == 101)
            break;
        http_parser_init(&conn->parser, HTTP_RESPONSE);
        conn->parser.data = conn;
        reset_response(conn);
        conn->nrecv = 1;
        if (off >= nread)
            break;
    }
    n = off;
    if (conn->complete) {
        /* Extra bytes after the response mean we cannot trust the stream. */
        cconn_complete(conn, n == nread);
        return;
    }
    enum http_errno e = HTTP_PARSER_ERRNO(&conn->parser);
    if (e != HPE_OK) {
        creq_fail(r, WLM_EIO, "%s: bad response from %s: %s", r->desc, conn->key,
                  http_errno_description(e));
        cconn_close(conn);
    }
}

struct cwrite {
    uv_write_t w;
    char *data;
};

static void cconn_write_cb(uv_write_t *w, int status);

/* Send `data` (malloc'd, taken) as it is. */
static int cconn_write_raw(struct cconn *conn, char *data, size_t len)
{
    struct creq *r = conn->req;
    struct cwrite *cw = malloc(sizeof(*cw));
    if (!cw) {
        free(data);
        if (r)
            creq_fail(r, ENOMEM, "%s: out of memory", r->desc);
        cconn_close(conn);
        return -ENOMEM;
    }
    cw->data = data;
    uv_buf_t b = uv_buf_init(data, (unsigned)len);
    int rc = uv_write(&cw->w, (uv_stream_t *)&conn->tcp, &b, 1, cconn_write_cb);
    if (rc) {
        free(data);
        free(cw);
        if (r)
            creq_fail(r, WLM_EIO, "%s: send to %s: %s", r->desc, conn->key, uv_strerror(rc));
        cconn_close(conn);
    }
    return rc;
}

static int cconn_tls_flush(struct cconn *conn)
{
    char *out;
    long n = wlm_tls_take_output(conn->ssl, &out);
    if (n < 0) {
        if (conn->req)
            creq_fail(conn->req, ENOMEM, "%s: out of memory", conn->req->desc);
        cconn_close(conn);
        return -ENOMEM;
    }
    return n ? cconn_write_raw(conn, out, (size_t)n) : 0;
}

static void cconn_tls_fail(struct cconn *conn, const char *what)
{
    char why[300];
    wlm_tls_handshake_error(conn->ssl, why, sizeof why);
    if (conn->req)
        creq_fail(conn->req, WLM_EIO, "%s: TLS %s with %s: %s", conn->req->desc, what, conn->key,
                  why);
    cconn_close(conn);
}

/* Drive the handshake; send the queued request once it is done. */
static void cconn_tls_handshake(struct cconn *conn)
{
    ERR_clear_error();
    int rc = SSL_do_handshake(conn->ssl);
    if (cconn_tls_flush(conn))
        return;
    if (rc != 1) {
        int e = SSL_get_error(conn->ssl, rc);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
            cconn_tls_fail(conn, "handshake failed");
        return;
    }
    conn->tls_up = 1;
    if (conn->send_queued && conn->req) {
        conn->send_queued = 0;
        cconn_send(conn);
    }
}

static void cconn_tls_read(struct cconn *conn, const char *data, size_t n)
{
    if (BIO_write(SSL_get_rbio(conn->ssl), data, (int)n) != (int)n) {
        cconn_tls_fail(conn, "read failed");
        return;
    }
    if (!conn->tls_up) {
        cconn_tls_handshake(conn);
        if (conn->closing || !conn->tls_up)
            return;
    }
    char buf[16384];
    while (!conn->closing) {
        ERR_clear_error();
        int k = SSL_read(conn->ssl, buf, (int)sizeof buf);
        if (k <= 0) {
            int e = SSL_get_error(conn->ssl, k);
            if (cconn_tls_flush(conn))
                return;
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                return;
            if (e == SSL_ERROR_ZERO_RETURN) { /* close_notify: the server is done */
                struct creq *r = conn->req;
                if (r && conn->nrecv > 0) {
                    http_parser_execute(&conn->parser, &client_settings, NULL, 0);
                    if (conn->complete) {
                        cconn_complete(conn, 0);
                        return;
                    }
                }
                if (r)
                    creq_fail(r, WLM_EIO, "%s: connection closed before the response was "
                              "complete", r->desc);
                cconn_close(conn);
                return;
            }
            cconn_tls_fail(conn, "read failed");
            return;
        }
        cconn_data(conn, buf, (size_t)k);
    }
}

static void cconn_write_cb(uv_write_t *w, int status)
{
    struct cwrite *cw = (struct cwrite *)w;
    struct cconn *conn = w->handle->data;
    free(cw->data);
    free(cw);
    if (status < 0 && status != UV_ECANCELED && !conn->closing) {
        struct creq *r = conn->req;
        if (r && conn->reused && !r->retried) {
            r->retried = 1;
            r->conn = NULL;
            conn->req = NULL;
            cconn_close(conn);
            creq_start(r);
            return;
        }
        if (r)
            creq_fail(r, WLM_EIO, "%s: send to %s: %s", r->desc, conn->key, uv_strerror(status));
        cconn_close(conn);
    }
}

static void cconn_send(struct cconn *conn)
{
    struct creq *r = conn->req;
    reset_response(conn);
    http_parser_init(&conn->parser, HTTP_RESPONSE);
    conn->parser.data = conn;
    if (conn->ssl) {
        if (!conn->tls_up) {
            conn->send_queued = 1;
            return;
        }
        ERR_clear_error();
        if (r->out.len && SSL_write(conn->ssl, r->out.data, (int)r->out.len) <= 0) {
            cconn_tls_fail(conn, "write failed");
            return;
        }
        cconn_tls_flush(conn);
        return;
    }
    struct cwrite *cw = malloc(sizeof(*cw));
    char *data = cw ? malloc(r->out.len ? r->out.len : 1) : NULL;
    if (!data) {
        free(cw);
        creq_fail(r, ENOMEM, "%s: out of memory", r->desc);
        cconn_close(conn);
        return;
    }
    memcpy(data, r->out.data, r->out.len);
    cw->data = data;
    uv_buf_t b = uv_buf_init(data, (unsigned)r->out.len);
    int rc = uv_write(&cw->w, (uv_stream_t *)&conn->tcp, &b, 1, cconn_write_cb);
    if (rc) {
        free(data);
        free(cw);
        creq_fail(r, WLM_EIO, "%s: send to %s: %s", r->desc, conn->key, uv_strerror(rc));
        cconn_close(conn);
    }
}

static void cconn_connected(uv_connect_t *cr, int status)
{
    struct cconn *conn = cr->handle->data;
    if (conn->closing)
        return;
    struct creq *r = conn->req;
    if (status < 0) {
        if (r && r->ai_next) {
            /* "localhost" may resolve to ::1 and 127.0.0.1: try each. */
            struct addrinfo *next = r->ai_next;
            r->ai_next = next->ai_next;
            conn->req = NULL;
            r->conn = NULL;
            cconn_close(conn);
            creq_connect(r, next->ai_addr);
            return;
        }
        if (r)
            creq_fail(r, WLM_EIO, "connect %s: %s", conn->key, uv_strerror(status));
        cconn_close(conn);
        return;
    }
    conn->connected = 1;
    uv_tcp_nodelay(&conn->tcp, 1);
    if (!r) {
        cconn_close(conn);
        return;
    }
    if (uv_read_start((uv_stream_t *)&conn->tcp, cconn_alloc, cconn_read)) {
        creq_fail(r, WLM_EIO, "connect %s: cannot read", conn->key);
        cconn_close(conn);
        return;
    }
    if (conn->https) {
        conn->ssl = wlm_tls_session(conn->c->tls_ctx, 0, r->host);
        if (!conn->ssl) {
            creq_fail(r, ENOMEM, "%s: out of memory", r->desc);
            cconn_close(conn);
            return;
        }
        conn->send_queued = 1;
        cconn_tls_handshake(conn);
        return;
    }
    cconn_send(conn);
}

static void creq_connect(struct creq *r, const struct sockaddr *sa)
{
    struct wlm_http_client *c = r->c;
    struct cconn *conn = calloc(1, sizeof(*conn));
    if (!conn) {
        creq_fail(r, ENOMEM, "%s: out of memory", r->desc);
        return;
    }
    conn->c = c;
    conn->https = r->https;
    wlm_strlcpy(conn->key, r->key, sizeof(conn->key));
    wlm__http_hdr_acc_init(&conn->acc);
    wlm_buf_init(&conn->body);
    uv_tcp_init(c->loop, &conn->tcp);
    conn->tcp.data = conn;
    c->alive++;
    conn->next = c->conns;
    if (c->conns)
        c->conns->prev = conn;
    c->conns = conn;
    conn->req = r;
    r->conn = conn;
    int rc = uv_tcp_connect(&conn->connect_req, &conn->tcp, sa, cconn_connected);
    if (rc) {
        creq_fail(r, WLM_EIO, "connect %s: %s", conn->key, uv_strerror(rc));
        cconn_close(conn);
    }
}

static void creq_resolved(uv_getaddrinfo_t *g, int status, struct addrinfo *res)
{
    struct creq *r = g->data;
    r->gai_pending = 0;
    if (r->done) {
        uv_freeaddrinfo(res);
        creq_maybe_free(r);
        return;
    }
    if (status < 0 || !res) {
        uv_freeaddrinfo(res);
        creq_fail(r, WLM_EIO, "resolve %s: %s", r->host,
                  uv_strerror(status ? status : UV_EAI_NONAME));
        return;
    }
    if (r->ai) /* a retry resolved again */
        uv_freeaddrinfo(r->ai);
    r->ai = res;
    r->ai_next = res->ai_next;
    creq_connect(r, res->ai_addr);
}

/* Send on an idle connection to the same host:port, or open one. */
static void creq_start(struct creq *r)
{
    struct wlm_http_client *c = r->c;
    for (struct cconn *x = c->conns; x; x = x->next) {
        if (x->idle && !x->closing && x->https == r->https && strcmp(x->key, r->key) == 0) {
            x->idle = 0;
            x->reused = 1;
            uv_ref((uv_handle_t *)&x->tcp);
            x->req = r;
            r->conn = x;
            cconn_send(x);
            return;
        }
    }
    struct sockaddr_storage ss;
    if (uv_ip4_addr(r->host, r->port, (struct sockaddr_in *)&ss) == 0 ||
        uv_ip6_addr(r->host, r->port, (struct sockaddr_in6 *)&ss) == 0) {
        creq_connect(r, (struct sockaddr *)&ss);
        return;
    }
    char port[16];
    snprintf(port, sizeof(port), "%d", r->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    r->gai.data = r;
    int rc = uv_getaddrinfo(c->loop, &r->gai, creq_resolved, r->host, port, &hints);
    if (rc) {
        creq_fail(r, WLM_EIO, "resolve %s: %s", r->host, uv_strerror(rc));
        return;
    }
    r->gai_pending = 1;
}

static void creq_timer(uv_timer_t *t)
{
    struct creq *r = t->data;
    if (r->early.code) {
        creq_finish(r, NULL, &r->early);
        return;
    }
    struct cconn *conn = r->conn;
    if (conn) {
        /* The connection's state is unknown mid-request: drop it. */
        conn->req = NULL;
        r->conn = NULL;
        cconn_close(conn);
    }
    creq_fail(r, WLM_ETIMEOUT, "%s: timed out after %u ms", r->desc, r->timeout_ms);
}

/* ---------------------------------------------------------------- public API */

struct wlm_http_client *wlm_http_client_new(uv_loop_t *loop)
{
    if (!loop)
        return NULL;
    struct wlm_http_client *c = calloc(1, sizeof(*c));
    if (c)
        c->loop = loop;
    return c;
}

static void mreqs_cancel(struct wlm_http_client *c);

void wlm_http_client_free(struct wlm_http_client *c)
{
    if (!c || c->closing)
        return;
    c->closing = 1;
    c->alive++; /* hold the client while callbacks run */
    while (c->reqs)
        creq_fail(c->reqs, ECANCELED, "%s: client closed", c->reqs->desc);
    while (c->conns)
        cconn_close(c->conns);
    mreqs_cancel(c);
    client_unref(c);
}

static int parse_url(const char *url, char **host, int *port, char **target, int *https,
                     struct wlm_error *err)
{
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (!url || http_parser_parse_url(url, strlen(url), 0, &u) != 0 ||
        !(u.field_set & (1 << UF_SCHEMA)) || !(u.field_set & (1 << UF_HOST)))
        return wlm_error_setf(err, WLM_EINVAL, "url", "bad URL '%s': want http://host:port/path",
                              url ? url : "");
    size_t sl = u.field_data[UF_SCHEMA].len;
    const char *sch = url + u.field_data[UF_SCHEMA].off;
    *https = sl == 5 && strncasecmp(sch, "https", 5) == 0;
    if (!*https && (sl != 4 || strncasecmp(sch, "http", 4) != 0))
        return wlm_error_setf(err, WLM_EINVAL, "url",
                              "bad URL '%s': only http:// and https:// are supported", url);
    *host = strndup(url + u.field_data[UF_HOST].off, u.field_data[UF_HOST].len);
    *port = (u.field_set & (1 << UF_PORT)) ? u.port : *https ? 443 : 80;
    struct wlm_buf t;
    wlm_buf_init(&t);
    if (u.field_set & (1 << UF_PATH))
        wlm_buf_append(&t, url + u.field_data[UF_PATH].off, u.field_data[UF_PATH].len);
    else
        wlm_buf_append(&t, "/", 1);
    if (u.field_set & (1 << UF_QUERY)) {
        wlm_buf_append(&t, "?", 1);
        wlm_buf_append(&t, url + u.field_data[UF_QUERY].off, u.field_data[UF_QUERY].len);
    }
    *target = wlm_buf_steal(&t);
    if (!*host || !*target) {
        free(*host);
        free(*target);
        return wlm_error_set(err, ENOMEM, "out of memory");
    }
    return 0;
}

static int client_request(struct wlm_http_client *c, const char *method, const char *url,
                          const char *token, const char *content_type, const void *body,
                          size_t len, unsigned timeout_ms, wlm_http_client_cb cb, void *ud,
                          struct wlm_error *err)
{
    if (!c || !method || !method[0])
        return wlm_error_set(err, WLM_EINVAL, "http request: no client or method");
    if (c->closing)
        return wlm_error_set(err, ECANCELED, "http request: client is closing");
    for (const char *m = method; *m; m++)
        if (*m <= ' ' || *m >= 127)
            return wlm_error_setf(err, WLM_EINVAL, "method", "bad HTTP method '%s'", method);
    if (token)
        for (const char *t = token; *t; t++)
            if (*t == '\r' || *t == '\n')
                return wlm_error_setf(err, WLM_EINVAL, "token", "token holds a line break");
    char *host = NULL, *target = NULL;
    int port = 0, https = 0;
    int rc = parse_url(url, &host, &port, &target, &https, err);
    if (rc)
        return rc;
    if (https && !c->tls_ctx && !(c->tls_ctx = wlm_tls_client_ctx(NULL, "ca", err))) {
        free(host);
        free(target);
        return err ? err->code : -WLM_EINVAL;
    }
    struct creq *r = calloc(1, sizeof(*r));
    if (!r) {
        free(host);
        free(target);
        return wlm_error_set(err, ENOMEM, "out of memory");
    }
    r->c = c;
    r->host = host;
    r->port = port;
    r->https = https;
    int v6 = strchr(host, ':') != NULL;
    snprintf(r->key, sizeof(r->key), v6 ? "[%s]:%d" : "%s:%d", host, port);
    r->desc = wlm_asprintf("%s %s", method, url);
    r->is_head = strcmp(method, "HEAD") == 0;
    r->timeout_ms = timeout_ms;
    r->cb = cb;
    r->ud = ud;
    wlm_buf_init(&r->out);
    struct wlm_buf *o = &r->out;
    rc = wlm_buf_printf(o, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: wlm/%s\r\n", method,
                        target, r->key, WLM_VERSION);
    if (!rc && token && token[0])
        rc = wlm_buf_printf(o, "Authorization: Bearer %s\r\n", token);
    if (!rc && (body || len))
        rc = wlm_buf_printf(o, "Content-Type: %s\r\n",
                            content_type && content_type[0] ? content_type : "application/json");
    int wants_len = body || len || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
                    strcmp(method, "PATCH") == 0;
    if (!rc && wants_len)
        rc = wlm_buf_printf(o, "Content-Length: %zu\r\n", len);
    if (!rc)
        rc = wlm_buf_append(o, "\r\n", 2);
    if (!rc && len)
        rc = wlm_buf_append(o, body, len);
    free(target);
    if (rc || !r->desc) {
        free(r->host);
        free(r->desc);
        wlm_buf_fini(&r->out);
        free(r);
        return wlm_error_set(err, ENOMEM, "out of memory");
    }
    uv_timer_init(c->loop, &r->timer);
    r->timer.data = r;
    c->alive++;
    r->next = c->reqs;
    if (c->reqs)
        c->reqs->prev = r;
    c->reqs = r;
    if (timeout_ms)
        uv_timer_start(&r->timer, creq_timer, timeout_ms, 0);
    r->starting = 1;
    creq_start(r);
    r->starting = 0;
    return 0;
}

/* ---------------------------------------------------------------- several servers
 *
 * A URL may name several servers: "http://h1:p1,h2:p2/path" (or
 * "http://h1:p1,http://h2:p2/path"), e.g. the controllers of an HA cluster.
 * The request goes to the server that answered last; on a transport failure
 * (or a 503) it moves to the next, and after a round on all of them it waits
 * (100 ms doubling up to 1 s) and goes round again until timeout_ms. A
 * 307/308 with a Location (a standby naming the leader) is followed, for any
 * URL, up to 4 times. Which server is in use is logged when it changes. */

#define MREQ_MAX_BASES 8

static size_t scheme_len(const char *p);

struct mreq {
    struct wlm_http_client *c;
    char *method, *token, *ctype, *body, *path;
    size_t len;
    char *bases[MREQ_MAX_BASES];
    size_t nbases, cur, tried;
    unsigned timeout_ms, backoff_ms;
    double deadline;
    int hops, list;
    unsigned failed_mask; /* bases that failed in this round */
    uv_timer_t wait;
    wlm_http_client_cb cb;
    void *ud;
    struct mreq *next, *prev; /* the client's multi-requests */
};

static void mreq_link(struct mreq *m)
{
    m->next = m->c->mreqs;
    if (m->next)
        m->next->prev = m;
    m->c->mreqs = m;
}

static void mreq_unlink(struct mreq *m)
{
    if (m->prev)
        m->prev->next = m->next;
    else if (m->c->mreqs == m)
        m->c->mreqs = m->next;
    if (m->next)
        m->next->prev = m->prev;
    m->next = m->prev = NULL;
}

/* The server that answered last, per list (process-wide: the CLI and the
 * agent talk to one cluster). */
static char mreq_pref_list[512], mreq_pref_base[256];

static void mreq_free_handle(uv_handle_t *h)
{
    struct mreq *m = h->data;
    for (size_t i = 0; i < m->nbases; i++)
        free(m->bases[i]);
    free(m->method), free(m->token), free(m->ctype), free(m->body), free(m->path);
    free(m);
}

static void mreq_done(struct mreq *m, const struct wlm_http_response *resp,
                      const struct wlm_error *err)
{
    mreq_unlink(m);
    if (m->cb)
        m->cb(resp, err, m->ud);
    uv_close((uv_handle_t *)&m->wait, mreq_free_handle);
}

static void mreq_send(struct mreq *m, const char *url, unsigned timeout_ms);

static void mreqs_cancel(struct wlm_http_client *c)
{
    while (c->mreqs) {
        struct mreq *m = c->mreqs;
        uv_timer_stop(&m->wait);
        struct wlm_http_response none = {0};
        struct wlm_error err;
        wlm_error_set(&err, ECANCELED, "%s %s: client closed", m->method, m->path);
        mreq_done(m, &none, &err);
    }
}

static int mreq_is_list(const struct mreq *m) { return m->nbases > 1; }

static void mreq_remember(struct mreq *m, const char *list_key)
{
    const char *base = m->bases[m->cur];
    /* A process starts on the first server quietly; a change is logged. */
    if (strcmp(mreq_pref_base, base) != 0 && (mreq_pref_base[0] || m->cur != 0 || m->hops > 0))
        wlm_info("http", "using server", "server=%s", base);
    wlm_strlcpy(mreq_pref_list, list_key, sizeof(mreq_pref_list));
    wlm_strlcpy(mreq_pref_base, base, sizeof(mreq_pref_base));
}

static void mreq_list_key(const struct mreq *m, char *out, size_t n)
{
    out[0] = 0;
    for (size_t i = 0; i < m->nbases; i++) {
        size_t l = strlen(out);
        snprintf(out + l, n - l, "%s%s", i ? "," : "", m->bases[i]);
    }
}

static void mreq_next(struct mreq *m);

static void mreq_wait_done(uv_timer_t *t)
{
    struct mreq *m = t->data;
    m->tried = 0;
    mreq_next(m);
}

static unsigned mreq_attempt_ms(const struct mreq *m)
{
    if (!m->timeout_ms)
        return 0;
    double left = (m->deadline - wlm_now_mono()) * 1000;
    size_t untried = m->nbases - m->tried;
    /* A server that accepts and never answers (stopped) must not eat the
     * whole budget: split what is left over the servers not tried yet. */
    double per = untried > 1 ? left / (double)untried : left;
    if (per < 300 && left > 300)
        per = 300;
    return per < 1 ? 1 : (unsigned)per;
}

static void mreq_next(struct mreq *m)
{
    char *url = wlm_asprintf("%s%s", m->bases[m->cur], m->path);
    m->tried++;
    mreq_send(m, url, mreq_attempt_ms(m));
    free(url);
}

/* Log a server change at most once per server and 10 s (agents retry often). */
static void mreq_log(int warn, const char *what, const char *server, const char *detail)
{
    static char last[256];
    static double last_t;
    double now = wlm_now_mono();
    if (strcmp(last, server) == 0 && now - last_t < 10)
        return;
    wlm_strlcpy(last, server, sizeof(last));
    last_t = now;
    if (warn)
        wlm_warn("http", what, "server=%s detail=\"%s\"", server, detail);
    else
        wlm_info("http", what, "server=%s", server);
}

static void mreq_cb(const struct wlm_http_response *resp, const struct wlm_error *err, void *ud)
{
    struct mreq *m = ud;
    char key[512];
    mreq_list_key(m, key, sizeof(key));
    int failed = err && err->code;
    if (m->c->closing) {
        mreq_done(m, resp, err);
        return;
    }
    if (failed && m->cur < 32)
        m->failed_mask |= 1u << m->cur;
    const char *loc = !failed && (resp->status == 307 || resp->status == 308)
                          ? wlm_http_response_header(resp, "Location")
                          : NULL;
    int dead_redirect = 0;
    if (loc && m->hops < 4 && scheme_len(loc)) {
        /* A standby names the leader: go there, and prefer it from now on. */
        const char *auth_end = strchr(loc + scheme_len(loc), '/');
        size_t blen = auth_end ? (size_t)(auth_end - loc) : strlen(loc);
        size_t i = 0;
        for (; i < m->nbases; i++)
            if (strlen(m->bases[i]) == blen && strncmp(m->bases[i], loc, blen) == 0)
                break;
        if (i == m->nbases && m->nbases < MREQ_MAX_BASES)
            m->bases[m->nbases++] = strndup(loc, blen);
        if (i < 32 && (m->failed_mask & (1u << i))) {
            /* It names a leader that just failed us: it has not noticed yet
             * (its lease still runs). Wait for the election instead. */
            dead_redirect = 1;
        } else {
            m->hops++;
            if (i < m->nbases)
                m->cur = i;
            mreq_log(0, "redirected to the leader", m->bases[m->cur], NULL);
            mreq_send(m, loc, mreq_attempt_ms(m));
            return;
        }
    }
    int retry = mreq_is_list(m) && (failed || resp->status == 503 || dead_redirect);
    if (retry && m->timeout_ms && wlm_now_mono() < m->deadline) {
        mreq_log(1, "server unavailable, trying the next", m->bases[m->cur],
                 failed ? err->msg : dead_redirect ? "redirects to a leader that is down" : "503");
        m->cur = (m->cur + 1) % m->nbases;
        if (m->tried < m->nbases) {
            mreq_next(m);
            return;
        }
        unsigned wait = m->backoff_ms;
        m->backoff_ms = m->backoff_ms * 2 > 1000 ? 1000 : m->backoff_ms * 2;
        double left = (m->deadline - wlm_now_mono()) * 1000;
        if (left > wait) {
            m->failed_mask = 0; /* a new round: anyone may have come back */
            uv_timer_start(&m->wait, mreq_wait_done, wait, 0);
            return;
        }
    }
    if (!failed && resp->status != 503 && !dead_redirect && (m->list || m->hops > 0))
        mreq_remember(m, key);
    mreq_done(m, resp, err);
}

static void mreq_send(struct mreq *m, const char *url, unsigned timeout_ms)
{
    struct wlm_error err = {0};
    if (client_request(m->c, m->method, url, m->token, m->ctype, m->body, m->len, timeout_ms,
                       mreq_cb, m, &err)) {
        struct wlm_http_response none = {0};
        mreq_done(m, &none, &err);
    }
}

static size_t scheme_len(const char *p)
{
    return strncmp(p, "http://", 7) == 0 ? 7 : strncmp(p, "https://", 8) == 0 ? 8 : 0;
}

/* Split "http://a:1,b:2/path" or "http://a:1,http://b:2/path" (or https)
 * into bases and the path. Returns 0 when the URL names one server. */
static int split_bases(const char *url, struct mreq *m)
{
    size_t sl = url ? scheme_len(url) : 0;
    if (!sl)
        return 0;
    const char *p = url + sl;
    const char *slash = strchr(p, '/');
    const char *comma = strchr(p, ',');
    if (!comma || (slash && slash < comma))
        return 0;
    const char *item = p;
    size_t isl = sl;
    const char *ischeme = url;
    for (;;) {
        const char *end = item;
        while (*end && *end != ',' && *end != '/')
            end++;
        if (m->nbases < MREQ_MAX_BASES)
            m->bases[m->nbases++] =
                wlm_asprintf("%.*s%.*s", (int)isl, ischeme, (int)(end - item), item);
        if (*end == ',') {
            item = end + 1;
            size_t l = scheme_len(item);
            if (l) {
                ischeme = item;
                isl = l;
                item += l;
            }
            continue;
        }
        m->path = wlm_strdup(*end ? end : "/");
        break;
    }
    return m->nbases > 1 ? 1 : 0;
}

static int multi_request(struct wlm_http_client *c, const char *method, const char *url,
                         const char *token, const char *content_type, const void *body,
                         size_t len, unsigned timeout_ms, wlm_http_client_cb cb, void *ud,
                         struct wlm_error *err)
{
    if (!c || !method || !method[0] || !url)
        return client_request(c, method, url, token, content_type, body, len, timeout_ms, cb, ud,
                              err);
    struct mreq *m = calloc(1, sizeof(*m));
    if (!m)
        return wlm_error_set(err, ENOMEM, "out of memory");
    int list = split_bases(url, m);
    m->list = list;
    if (!list) {
        for (size_t i = 0; i < m->nbases; i++)
            free(m->bases[i]);
        m->nbases = 0;
        free(m->path);
        m->path = NULL;
        /* One server: as before, plus following a redirect. */
        m->bases[m->nbases++] = wlm_strdup(url);
        m->path = wlm_strdup("");
    }
    m->c = c;
    m->method = wlm_strdup(method);
    m->token = token ? wlm_strdup(token) : NULL;
    m->ctype = content_type ? wlm_strdup(content_type) : NULL;
    m->body = len ? malloc(len) : NULL;
    if (len && m->body)
        memcpy(m->body, body, len);
    m->len = len;
    m->timeout_ms = timeout_ms;
    m->deadline = wlm_now_mono() + timeout_ms / 1000.0;
    m->backoff_ms = 100;
    m->cb = cb;
    m->ud = ud;
    if (list) {
        char key[512];
        mreq_list_key(m, key, sizeof(key));
        if (strcmp(key, mreq_pref_list) == 0)
            for (size_t i = 0; i < m->nbases; i++)
                if (strcmp(m->bases[i], mreq_pref_base) == 0)
                    m->cur = i;
    }
    char *first = wlm_asprintf("%s%s", m->bases[m->cur], m->path);
    uv_timer_init(c->loop, &m->wait);
    m->wait.data = m;
    m->tried = 1;
    int rc = client_request(c, method, first, token, content_type, body, len,
                            list ? mreq_attempt_ms(m) : timeout_ms, mreq_cb, m, err);
    free(first);
    if (rc) {
        uv_close((uv_handle_t *)&m->wait, mreq_free_handle);
        return rc;
    }
    mreq_link(m);
    return 0;
}

int wlm_http_client_request(struct wlm_http_client *c, const char *method, const char *url,
                            const char *token, const char *content_type, const void *body,
                            size_t len, unsigned timeout_ms, wlm_http_client_cb cb, void *ud)
{
    return multi_request(c, method, url, token, content_type, body, len, timeout_ms, cb, ud,
                         NULL);
}

int wlm_http_client_set_ca(struct wlm_http_client *c, const char *ca_file, struct wlm_error *err)
{
    if (!c)
        return wlm_error_set(err, WLM_EINVAL, "set CA: no client");
    SSL_CTX *ctx = wlm_tls_client_ctx(ca_file, "ca", err);
    if (!ctx)
        return err ? err->code : -WLM_EINVAL;
    /* Open connections keep the context they were made with (SSL_new takes
     * a reference). */
    SSL_CTX_free(c->tls_ctx);
    c->tls_ctx = ctx;
    return 0;
}

/* ---------------------------------------------------------------- blocking fetch */

struct fetch_state {
    struct wlm_http_response *resp;
    struct wlm_error *err;
    int done, rc;
};

static void fetch_cb(const struct wlm_http_response *resp, const struct wlm_error *err, void *ud)
{
    struct fetch_state *st = ud;
    st->done = 1;
    if (err && err->code) {
        st->rc = err->code;
        if (st->err)
            *st->err = *err;
        return;
    }
    struct wlm_http_response *out = st->resp;
    out->status = resp->status;
    out->body_len = resp->body_len;
    out->body = malloc(resp->body_len + 1);
    if (out->body) {
        memcpy(out->body, resp->body ? resp->body : "", resp->body_len);
        out->body[resp->body_len] = '\0';
    }
    for (size_t i = 0; i < resp->nheaders; i++)
        if (wlm__http_headers_add(&out->headers, &out->nheaders, resp->headers[i].name,
                                  strlen(resp->headers[i].name), resp->headers[i].value,
                                  strlen(resp->headers[i].value)))
            break;
    if (!out->body) {
        wlm_http_response_fini(out);
        st->rc = wlm_error_set(st->err, ENOMEM, "out of memory");
    }
}

int wlm_http_fetch(const char *method, const char *url, const char *token, const char *content_type,
                   const void *body, size_t len, unsigned timeout_ms,
                   struct wlm_http_response *resp, struct wlm_error *err)
{
    struct wlm_http_response scratch;
    if (!resp)
        resp = &scratch;
    memset(resp, 0, sizeof(*resp));
    wlm_error_clear(err);
    uv_loop_t loop;
    int rc = uv_loop_init(&loop);
    if (rc)
        return wlm_error_set(err, WLM_EINTERNAL, "uv_loop_init: %s", uv_strerror(rc));
    struct wlm_http_client *c = wlm_http_client_new(&loop);
    struct fetch_state st = {.resp = resp, .err = err};
    const char *ca = getenv("WLM_CA");
    if (!c)
        rc = wlm_error_set(err, ENOMEM, "out of memory");
    else if (url && strncasecmp(url, "https:", 6) == 0 && ca && ca[0] &&
             wlm_http_client_set_ca(c, ca, err))
        rc = err ? err->code : -WLM_EINVAL;
    else
        rc = multi_request(c, method, url, token, content_type, body, len, timeout_ms, fetch_cb,
                           &st, err);
    if (!rc) {
        while (!st.done)
            if (uv_run(&loop, UV_RUN_ONCE) == 0 && !st.done) {
                st.rc = wlm_error_set(err, WLM_EINTERNAL, "%s %s: request stalled", method, url);
                break;
            }
        rc = st.rc;
    }
    wlm_http_client_free(c);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    if (resp == &scratch)
        wlm_http_response_fini(&scratch);
    return rc;
}
