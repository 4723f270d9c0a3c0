/*
 * http_server_request.c - a server request's life: the request object, its
 * place in the connection's queue (or among the orphans), and the response
 * the handler writes into it (whole, or streamed in chunks).
 *
 * See http_server.c for the model (ordering, lifetime, orphans).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "http_server_internal.h"

struct http_sreq *wlm__http_sreq_new(struct wlm_http_conn *conn)
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

void wlm__http_sreq_free(struct http_sreq *r)
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

void wlm__http_queue_push(struct wlm_http_conn *conn, struct http_sreq *r)
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

void wlm__http_queue_remove(struct wlm_http_conn *conn, struct http_sreq *r)
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

void wlm__http_orphan_remove(struct wlm_http_server *srv, struct http_sreq *r)
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
        wlm__http_orphan_remove(r->srv, r);
        wlm__http_sreq_free(r);
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
        wlm__http_conn_close(conn);
        return rc;
    }
    record_metrics(r);
    wlm__http_conn_flush(conn);
    return 0;
}

int wlm_http_respond_json(struct wlm_http_req *req, int status, json_t *v)
{
    char *s = v ? wlm_json_dumps(v) : NULL;
    json_decref(v);
    if (!s)
        return wlm__http_respond_error_hdr(req, 500, NULL, "internal",
                                           "could not encode the response");
    int rc = wlm_http_respond(req, status, "application/json", NULL, s, strlen(s));
    free(s);
    return rc;
}

int wlm__http_respond_error_hdr(struct wlm_http_req *req, int status, const char *extra,
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
    return wlm__http_respond_error_hdr(
        req, status, status == 401 ? "WWW-Authenticate: Bearer realm=\"wlm\"" : NULL, error,
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
        return wlm__http_respond_error_hdr(req, status, NULL, wlm_error_name(code), msg);
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
        wlm__http_conn_close(req->conn);
        return rc;
    }
    wlm__http_conn_flush(req->conn);
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
        wlm__http_conn_close(req->conn);
        return rc;
    }
    struct wlm_http_conn *conn = req->conn;
    wlm__http_conn_flush(conn);
    /* A consumer that does not keep up would make us buffer without bound.
     * Drop it from the next loop turn (not here: on_abort would then run
     * inside this call, under the caller's feet). */
    if (!conn->closing && conn->tmode != T_KILL &&
        conn->tcp.write_queue_size + r->out.len > HTTP_MAX_STREAM_BACKLOG) {
        conn->tmode = T_KILL;
        uv_timer_start(&conn->timer, wlm__http_timer_cb, 0, 0);
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
        wlm__http_conn_close(req->conn);
        return rc;
    }
    record_metrics(r);
    wlm__http_conn_flush(req->conn);
    return 0;
}
