/*
 * http_server_parse.c - http-parser callbacks for the server: a request's
 * target, header fields (with limits and framing checks), body, and its
 * completion, which queues it and hands it to dispatch.
 */
#include <errno.h>
#include <string.h>
#include <strings.h>

#include "http_server_internal.h"

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
        wlm__http_conn_reject(conn, 414, "uri_too_long", detail);
    else
        wlm__http_conn_reject(conn, 431, "header_too_large", detail);
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
    if (a->field.len == 0 ||
        strspn(name, "!#$%&'*+-.^_`|~0123456789"
                     "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") != a->field.len) {
        wlm__http_conn_reject(conn, 400, "invalid", "malformed header field name");
        return -1;
    }
    if (r->pub.nheaders >= HTTP_MAX_HEADERS) {
        wlm__http_conn_reject(conn, 431, "header_too_large", "too many header fields");
        return -1;
    }
    if (wlm__http_headers_add(&r->pub.headers, &r->pub.nheaders, name, a->field.len, value,
                              a->value.len)) {
        wlm__http_conn_close(conn);
        return -1;
    }
    if (strcasecmp(name, "content-length") == 0) {
        if (r->seen_cl && strcmp(r->cl_value, value) != 0) {
            wlm__http_conn_reject(conn, 400, "invalid", "conflicting Content-Length headers");
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
    conn->cur = wlm__http_sreq_new(conn);
    if (!conn->cur) {
        wlm__http_conn_close(conn);
        return -1;
    }
    wlm__http_hdr_acc_reset(&conn->acc);
    wlm__http_conn_update_timer(conn);
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct wlm_http_conn *conn = p->data;
    if (over_header_limit(conn, len, 1))
        return -1;
    if (wlm_buf_append(&conn->cur->url, at, len)) {
        wlm__http_conn_close(conn);
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
        wlm__http_conn_close(conn);
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
        wlm__http_conn_close(conn);
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
        wlm__http_conn_close(conn);
        return -1;
    }

    if (r->seen_cl && r->seen_te) {
        wlm__http_conn_reject(conn, 400, "invalid",
                              "both Content-Length and Transfer-Encoding present");
        return -1;
    }
    if (p->http_major != 1) {
        wlm__http_conn_reject(conn, 505, "invalid", "only HTTP/1.x is supported");
        return -1;
    }

    struct http_parser_url u;
    http_parser_url_init(&u);
    if (http_parser_parse_url(req->url, strlen(req->url), p->method == HTTP_CONNECT, &u) != 0 ||
        !(u.field_set & (1 << UF_PATH))) {
        wlm__http_conn_reject(conn, 400, "invalid", "malformed request target");
        return -1;
    }
    req->path =
        wlm__http_pct_decode(req->url + u.field_data[UF_PATH].off, u.field_data[UF_PATH].len, 0);
    if (!req->path) {
        wlm__http_conn_reject(conn, 400, "invalid", "malformed percent-encoding in the path");
        return -1;
    }
    if (u.field_set & (1 << UF_QUERY))
        req->query = strndup(req->url + u.field_data[UF_QUERY].off, u.field_data[UF_QUERY].len);

    if ((p->flags & F_CONTENTLENGTH) && p->content_length > srv->max_body_bytes) {
        char detail[96];
        snprintf(detail, sizeof(detail), "request body larger than %zu bytes", srv->max_body_bytes);
        wlm__http_conn_reject(conn, 413, "body_too_large", detail);
        return -1;
    }

    /* Answer "Expect: 100-continue" only when nothing is queued ahead of this
     * request, since an interim response must not overtake earlier ones; a
     * client that gets none sends the body after its own short wait. */
    const char *expect = wlm_http_req_header(req, "Expect");
    if (expect && strcasecmp(expect, "100-continue") == 0 && conn->nq == 0 &&
        req->http_minor >= 1 && ((p->flags & F_CHUNKED) || p->content_length > 0)) {
        struct wlm_buf b;
        wlm_buf_init(&b);
        if (wlm_buf_printf(&b, "HTTP/1.1 100 Continue\r\n\r\n") == 0)
            wlm__http_conn_write(conn, &b);
        wlm_buf_fini(&b);
        if (conn->closing)
            return -1;
    }
    wlm__http_conn_update_timer(conn);
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
        wlm__http_conn_reject(conn, 413, "body_too_large", detail);
        return -1;
    }
    if (wlm_buf_append(&r->body, at, len)) {
        wlm__http_conn_close(conn);
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
        wlm__http_sreq_free(r);
        wlm__http_conn_close(conn);
        return -1;
    }
    if (!r->pub.keep_alive || p->upgrade) {
        r->close_after = 1;
        conn->final = 1;
    }
    wlm__http_queue_push(conn, r);
    wlm__http_dispatch(r); /* may respond, and free r, right away */
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
size_t wlm__http_conn_parse(struct wlm_http_conn *conn, const char *data, size_t len)
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
        wlm__http_conn_reject(conn, e == HPE_HEADER_OVERFLOW ? 431 : 400,
                              e == HPE_HEADER_OVERFLOW ? "header_too_large" : "invalid", detail);
        return len;
    }
    return n;
}
