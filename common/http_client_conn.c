/*
 * http_client_conn.c - the client's connections: opening one, sending a request
 * on it, parsing the response, and after it either keeping the connection in
 * the idle pool or closing it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

#include "http_client_internal.h"

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
    wlm__http_client_unref(c);
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

void wlm__http_cconn_close(struct cconn *conn)
{
    if (conn->closing)
        return;
    conn->closing = 1;
    cconn_unlink(conn);
    if (conn->req) {
        struct creq *r = conn->req;
        wlm__http_creq_fail(r, WLM_EIO, "%s: connection to %s closed", r->desc, conn->key);
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

const http_parser_settings wlm__http_client_settings = {
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

void wlm__http_cconn_complete(struct cconn *conn, int reusable)
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
        wlm__http_cconn_close(conn);
    }
    wlm__http_creq_finish(r, &resp, NULL);
    wlm_http_response_fini(&resp);
}

static void cconn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    buf->base = malloc(suggested);
    buf->len = buf->base ? suggested : 0;
}

/* The request failed on a reused connection before any of its answer came:
 * the server most likely timed the idle connection out just as we sent, so
 * it goes once more, on a fresh connection. */
static void cconn_retry(struct cconn *conn, struct creq *r)
{
    r->retried = 1;
    r->conn = NULL;
    conn->req = NULL;
    wlm__http_cconn_close(conn);
    wlm__http_creq_start(r);
}

static void cconn_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct cconn *conn = s->data;
    struct creq *r = conn->req;
    if (nread == 0 || conn->closing) {
        free(buf->base);
        return;
    }
    if (nread > 0 && conn->ssl) {
        wlm__http_cconn_tls_read(conn, buf->base, (size_t)nread);
        free(buf->base);
        return;
    }
    if (nread > 0) {
        wlm__http_cconn_data(conn, buf->base, (size_t)nread);
        free(buf->base);
        return;
    }
    if (nread < 0) {
        free(buf->base);
        if (!r) {
            wlm__http_cconn_close(conn);
            return;
        }
        if (nread == UV_EOF && conn->nrecv > 0) {
            /* A body delimited by the end of the connection. */
            http_parser_execute(&conn->parser, &wlm__http_client_settings, NULL, 0);
            if (conn->complete) {
                wlm__http_cconn_complete(conn, 0);
                return;
            }
        }
        if (conn->reused && conn->nrecv == 0 && !r->retried) {
            cconn_retry(conn, r);
            return;
        }
        if (conn->ssl && !conn->tls_up) {
            wlm__http_creq_fail(r, WLM_EIO,
                                "%s: TLS: the server closed the connection during the "
                                "handshake (is it serving plain HTTP?)",
                                r->desc);
            wlm__http_cconn_close(conn);
            return;
        }
        wlm__http_creq_fail(r, WLM_EIO, "%s: %s", r->desc,
                            nread == UV_EOF ? "connection closed before the response was complete"
                                            : uv_strerror((int)nread));
        wlm__http_cconn_close(conn);
        return;
    }
}

/* Plaintext response bytes (from the socket or out of TLS). */
void wlm__http_cconn_data(struct cconn *conn, const char *data, size_t nread)
{
    struct creq *r = conn->req;
    if (!r) {
        /* Bytes on an idle connection: the stream is out of step. */
        wlm__http_cconn_close(conn);
        return;
    }
    conn->nrecv += nread;
    size_t off = 0, n;
    for (;;) {
        n = http_parser_execute(&conn->parser, &wlm__http_client_settings, data + off, nread - off);
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
        wlm__http_cconn_complete(conn, n == nread);
        return;
    }
    enum http_errno e = HTTP_PARSER_ERRNO(&conn->parser);
    if (e != HPE_OK) {
        wlm__http_creq_fail(r, WLM_EIO, "%s: bad response from %s: %s", r->desc, conn->key,
                            http_errno_description(e));
        wlm__http_cconn_close(conn);
    }
}

struct cwrite {
    uv_write_t w;
    char *data;
};

static void cconn_write_cb(uv_write_t *w, int status);

/* Send `data` (malloc'd, taken) as it is. */
int wlm__http_cconn_write_raw(struct cconn *conn, char *data, size_t len)
{
    struct creq *r = conn->req;
    struct cwrite *cw = malloc(sizeof(*cw));
    if (!cw) {
        free(data);
        if (r)
            wlm__http_creq_fail(r, ENOMEM, "%s: out of memory", r->desc);
        wlm__http_cconn_close(conn);
        return -ENOMEM;
    }
    cw->data = data;
    uv_buf_t b = uv_buf_init(data, (unsigned)len);
    int rc = uv_write(&cw->w, (uv_stream_t *)&conn->tcp, &b, 1, cconn_write_cb);
    if (rc) {
        free(data);
        free(cw);
        if (r)
            wlm__http_creq_fail(r, WLM_EIO, "%s: send to %s: %s", r->desc, conn->key,
                                uv_strerror(rc));
        wlm__http_cconn_close(conn);
    }
    return rc;
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
            cconn_retry(conn, r);
            return;
        }
        if (r)
            wlm__http_creq_fail(r, WLM_EIO, "%s: send to %s: %s", r->desc, conn->key,
                                uv_strerror(status));
        wlm__http_cconn_close(conn);
    }
}

void wlm__http_cconn_send(struct cconn *conn)
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
            wlm__http_cconn_tls_fail(conn, "write failed");
            return;
        }
        wlm__http_cconn_tls_flush(conn);
        return;
    }
    struct cwrite *cw = malloc(sizeof(*cw));
    char *data = cw ? malloc(r->out.len ? r->out.len : 1) : NULL;
    if (!data) {
        free(cw);
        wlm__http_creq_fail(r, ENOMEM, "%s: out of memory", r->desc);
        wlm__http_cconn_close(conn);
        return;
    }
    memcpy(data, r->out.data, r->out.len);
    cw->data = data;
    uv_buf_t b = uv_buf_init(data, (unsigned)r->out.len);
    int rc = uv_write(&cw->w, (uv_stream_t *)&conn->tcp, &b, 1, cconn_write_cb);
    if (rc) {
        free(data);
        free(cw);
        wlm__http_creq_fail(r, WLM_EIO, "%s: send to %s: %s", r->desc, conn->key, uv_strerror(rc));
        wlm__http_cconn_close(conn);
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
            wlm__http_cconn_close(conn);
            wlm__http_creq_connect(r, next->ai_addr);
            return;
        }
        if (r)
            wlm__http_creq_fail(r, WLM_EIO, "connect %s: %s", conn->key, uv_strerror(status));
        wlm__http_cconn_close(conn);
        return;
    }
    conn->connected = 1;
    uv_tcp_nodelay(&conn->tcp, 1);
    if (!r) {
        wlm__http_cconn_close(conn);
        return;
    }
    if (uv_read_start((uv_stream_t *)&conn->tcp, cconn_alloc, cconn_read)) {
        wlm__http_creq_fail(r, WLM_EIO, "connect %s: cannot read", conn->key);
        wlm__http_cconn_close(conn);
        return;
    }
    if (conn->https) {
        conn->ssl = wlm_tls_session(conn->c->tls_ctx, 0, r->host);
        if (!conn->ssl) {
            wlm__http_creq_fail(r, ENOMEM, "%s: out of memory", r->desc);
            wlm__http_cconn_close(conn);
            return;
        }
        conn->send_queued = 1;
        wlm__http_cconn_tls_handshake(conn);
        return;
    }
    wlm__http_cconn_send(conn);
}

void wlm__http_creq_connect(struct creq *r, const struct sockaddr *sa)
{
    struct wlm_http_client *c = r->c;
    struct cconn *conn = calloc(1, sizeof(*conn));
    if (!conn) {
        wlm__http_creq_fail(r, ENOMEM, "%s: out of memory", r->desc);
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
        wlm__http_creq_fail(r, WLM_EIO, "connect %s: %s", conn->key, uv_strerror(rc));
        wlm__http_cconn_close(conn);
    }
}
