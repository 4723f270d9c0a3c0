/*
 * http_server_conn.c - one server connection's I/O: reading and handing input
 * to the parser (pausing when the pipeline is full), writing responses in
 * queue order, timers (header, idle, drain), the final error response, the
 * half-close and drain, and closing.
 */
#include <errno.h>
#include <stdlib.h>

#include "http_server_internal.h"

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
        wlm__http_conn_close(conn);
}

/* Send `data` (malloc'd, taken) as it is: what OpenSSL produced (handshake,
 * records, alerts), or a plain connection's response bytes. */
int wlm__http_conn_write_raw(struct wlm_http_conn *conn, char *data, size_t len)
{
    struct http_wreq *wr = malloc(sizeof(*wr));
    if (!wr) {
        free(data);
        wlm__http_conn_close(conn);
        return -ENOMEM;
    }
    wr->data = data;
    uv_buf_t ub = uv_buf_init(wr->data, (unsigned)len);
    int rc = uv_write(&wr->w, (uv_stream_t *)&conn->tcp, &ub, 1, write_cb);
    if (rc) {
        free(wr->data);
        free(wr);
        wlm__http_conn_close(conn);
    }
    return rc;
}

/* Hand the buffer's bytes to the socket; the buffer is left empty. */
int wlm__http_conn_write(struct wlm_http_conn *conn, struct wlm_buf *b)
{
    if (conn->ssl) {
        size_t off = 0;
        while (off < b->len) {
            size_t chunk = b->len - off > (1u << 30) ? (1u << 30) : b->len - off;
            int k = SSL_write(conn->ssl, b->data + off, (int)chunk);
            if (k <= 0) {
                wlm_buf_fini(b);
                wlm__http_conn_close(conn);
                return -EPROTO;
            }
            off += (size_t)k;
        }
        wlm_buf_fini(b);
        return wlm__http_conn_tls_flush(conn);
    }
    size_t len = b->len;
    return wlm__http_conn_write_raw(conn, wlm_buf_steal(b), len);
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
    wlm__http_server_maybe_done(srv);
}

void wlm__http_conn_close(struct wlm_http_conn *conn)
{
    if (conn->closing)
        return;
    conn->closing = 1;
    struct wlm_http_server *srv = conn->srv;
    uv_timer_stop(&conn->timer);
    uv_read_stop((uv_stream_t *)&conn->tcp);
    wlm__http_sreq_free(conn->cur);
    conn->cur = NULL;
    while (conn->qhead) {
        struct http_sreq *r = conn->qhead;
        wlm__http_queue_remove(conn, r);
        if (r->state != SREQ_HANDLING && r->state != SREQ_STREAMING) {
            wlm__http_sreq_free(r);
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
            wlm__http_orphan_remove(srv, r);
            wlm__http_sreq_free(r);
        }
    }
    uv_close((uv_handle_t *)&conn->tcp, close_cb);
    uv_close((uv_handle_t *)&conn->timer, close_cb);
}

static void shutdown_cb(uv_shutdown_t *sr, int status)
{
    struct wlm_http_conn *conn = sr->handle->data;
    if (status < 0)
        wlm__http_conn_close(conn);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct wlm_http_conn *conn = h->data;
    *buf = uv_buf_init(conn->srv->rbuf, sizeof(conn->srv->rbuf));
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

void wlm__http_conn_start_reading(struct wlm_http_conn *conn)
{
    if (conn->reading || conn->closing || conn->peer_eof)
        return;
    if (uv_read_start((uv_stream_t *)&conn->tcp, alloc_cb, read_cb) == 0)
        conn->reading = 1;
    else
        wlm__http_conn_close(conn);
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
void wlm__http_conn_finish(struct wlm_http_conn *conn)
{
    if (conn->closing || conn->draining)
        return;
    wlm__http_sreq_free(conn->cur);
    conn->cur = NULL;
    if (conn->peer_eof) {
        wlm__http_conn_close(conn);
        return;
    }
    conn->draining = 1;
    if (conn->ssl && conn->tls_up) { /* close_notify before the TCP half-close */
        SSL_shutdown(conn->ssl);
        if (wlm__http_conn_tls_flush(conn))
            return;
    }
    if (uv_shutdown(&conn->shut, (uv_stream_t *)&conn->tcp, shutdown_cb)) {
        wlm__http_conn_close(conn);
        return;
    }
    wlm__http_conn_start_reading(conn);
    conn->tmode = T_DRAIN;
    uv_timer_start(&conn->timer, wlm__http_timer_cb, HTTP_DRAIN_MS, 0);
}

static void conn_resume(struct wlm_http_conn *conn);

void wlm__http_conn_flush(struct wlm_http_conn *conn)
{
    struct http_sreq *r;
    while (!conn->closing && (r = conn->qhead)) {
        if (r->out.len && wlm__http_conn_write(conn, &r->out))
            return;
        if (r->state != SREQ_DONE)
            break;
        wlm__http_queue_remove(conn, r);
        int close_after = r->close_after;
        wlm__http_sreq_free(r);
        if (close_after) {
            conn->final = 1;
            /* Nothing after a closing response may be sent. */
            while (conn->qhead) {
                struct http_sreq *x = conn->qhead;
                wlm__http_queue_remove(conn, x);
                if (x->state == SREQ_DONE || x->state == SREQ_PARSING) {
                    wlm__http_sreq_free(x);
                } else {
                    x->close_after = 1; /* cannot happen: final stops parsing */
                    wlm__http_queue_push(conn, x);
                    break;
                }
            }
            break;
        }
    }
    if (conn->closing)
        return;
    if (conn->final && conn->nq == 0) {
        wlm__http_conn_finish(conn);
        return;
    }
    conn_resume(conn);
    wlm__http_conn_update_timer(conn);
}

/* Queue a final error response in order and stop parsing. */
void wlm__http_conn_reject(struct wlm_http_conn *conn, int status, const char *error,
                           const char *detail)
{
    if (conn->closing || conn->final)
        return;
    struct http_sreq *r = conn->cur;
    conn->cur = NULL;
    if (!r)
        r = wlm__http_sreq_new(conn);
    if (!r) {
        wlm__http_conn_close(conn);
        return;
    }
    conn->final = 1;
    r->close_after = 1;
    r->state = SREQ_HANDLING;
    wlm__http_queue_push(conn, r);
    wlm__http_respond_error_hdr(&r->pub, status, NULL, error, detail);
}

void wlm__http_conn_update_timer(struct wlm_http_conn *conn)
{
    if (conn->closing || conn->draining || conn->tmode == T_KILL)
        return;
    struct wlm_http_server *srv = conn->srv;
    if (conn->cur && !conn->cur->headers_done) {
        if (conn->tmode != T_HEADER) {
            conn->tmode = T_HEADER;
            uv_timer_start(&conn->timer, wlm__http_timer_cb, srv->header_timeout_ms, 0);
        }
    } else if (conn->nq > 0 || conn->final) {
        conn->tmode = T_NONE;
        uv_timer_stop(&conn->timer);
    } else {
        conn->tmode = T_IDLE;
        uv_timer_start(&conn->timer, wlm__http_timer_cb, srv->idle_timeout_ms, 0);
    }
}

void wlm__http_timer_cb(uv_timer_t *t)
{
    struct wlm_http_conn *conn = t->data;
    switch (conn->tmode) {
    case T_HEADER: {
        char detail[96];
        snprintf(detail, sizeof(detail), "request header not complete within %u ms",
                 conn->srv->header_timeout_ms);
        conn->tmode = T_NONE;
        wlm__http_conn_reject(conn, 408, "timeout", detail);
        break;
    }
    case T_IDLE:
    case T_DRAIN:
    case T_KILL: wlm__http_conn_close(conn); break;
    case T_NONE: break;
    }
}

/* Continue parsing input held back while the pipeline was full. */
static void conn_resume(struct wlm_http_conn *conn)
{
    while (conn->paused && !conn->in_parse && !conn->closing && !conn->final &&
           conn->nq < HTTP_MAX_PIPELINE) {
        conn->paused = 0;
        http_parser_pause(&conn->parser, 0);
        size_t avail = conn->inbuf.len - conn->inoff;
        size_t n = avail ? wlm__http_conn_parse(conn, conn->inbuf.data + conn->inoff, avail) : 0;
        if (conn->closing)
            return;
        conn->inoff += n;
        if (!conn->paused || conn->inoff >= conn->inbuf.len) {
            wlm_buf_fini(&conn->inbuf);
            conn->inoff = 0;
        }
    }
    if (!conn->paused && !conn->final && !conn->closing)
        wlm__http_conn_start_reading(conn);
}

void wlm__http_conn_on_eof(struct wlm_http_conn *conn)
{
    conn_stop_reading(conn);
    if (conn->draining || conn->nq == 0) {
        wlm__http_conn_close(conn);
        return;
    }
    /* EOF cannot tell a half-close from a peer that went away. Treat it as
     * going away when a handler still works on a request (so long polls and
     * streams are aborted, not left running), but let responses that are
     * already complete go out first. */
    for (struct http_sreq *r = conn->qhead; r; r = r->next)
        if (r->state != SREQ_DONE) {
            wlm__http_conn_close(conn);
            return;
        }
    conn->peer_eof = 1;
    conn->final = 1;
    wlm__http_sreq_free(conn->cur);
    conn->cur = NULL;
    wlm__http_conn_update_timer(conn);
}

/* Plaintext request bytes, from the socket or out of TLS. */
void wlm__http_conn_input(struct wlm_http_conn *conn, const char *data, size_t nread)
{
    if (nread == 0 || conn->closing || conn->draining || conn->final)
        return; /* after a final response, input is discarded */
    size_t n = wlm__http_conn_parse(conn, data, nread);
    if (conn->closing)
        return;
    if (conn->paused && n < nread) {
        if (wlm_buf_append(&conn->inbuf, data + n, nread - n)) {
            wlm__http_conn_close(conn);
            return;
        }
        conn_stop_reading(conn);
        conn_resume(conn); /* responses may have completed meanwhile */
        if (conn->closing)
            return;
    }
    wlm__http_conn_update_timer(conn);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct wlm_http_conn *conn = s->data;
    if (nread < 0) {
        if (nread == UV_EOF)
            wlm__http_conn_on_eof(conn);
        else
            wlm__http_conn_close(conn);
        return;
    }
    if (conn->ssl) {
        if (nread > 0 && !conn->closing)
            wlm__http_conn_tls_input(conn, buf->base, (size_t)nread);
        return;
    }
    wlm__http_conn_input(conn, buf->base, (size_t)nread);
}
