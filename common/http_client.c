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
 *
 * The pieces: http_client.c (this: the client object, building a request,
 * the blocking fetch), http_client_request.c (a request's life),
 * http_client_conn.c (connections and the pool), http_client_tls.c (https),
 * http_client_multi.c (lists of servers, failover, redirects); their shared
 * types are in http_client_internal.h.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http_client_internal.h"

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

struct wlm_http_client *wlm_http_client_new(uv_loop_t *loop)
{
    if (!loop)
        return NULL;
    struct wlm_http_client *c = calloc(1, sizeof(*c));
    if (c)
        c->loop = loop;
    return c;
}

void wlm_http_client_free(struct wlm_http_client *c)
{
    if (!c || c->closing)
        return;
    c->closing = 1;
    c->alive++; /* hold the client while callbacks run */
    while (c->reqs)
        wlm__http_creq_fail(c->reqs, ECANCELED, "%s: client closed", c->reqs->desc);
    while (c->conns)
        wlm__http_cconn_close(c->conns);
    wlm__http_mreqs_cancel(c);
    wlm__http_client_unref(c);
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

int wlm__http_client_request(struct wlm_http_client *c, const char *method, const char *url,
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
    rc = wlm_buf_printf(o, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: wlm/%s\r\n", method, target,
                        r->key, WLM_VERSION);
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
        uv_timer_start(&r->timer, wlm__http_creq_timer, timeout_ms, 0);
    r->starting = 1;
    wlm__http_creq_start(r);
    r->starting = 0;
    return 0;
}

int wlm_http_client_request(struct wlm_http_client *c, const char *method, const char *url,
                            const char *token, const char *content_type, const void *body,
                            size_t len, unsigned timeout_ms, wlm_http_client_cb cb, void *ud)
{
    return wlm__http_multi_request(c, method, url, token, content_type, body, len, timeout_ms, cb,
                                   ud, NULL);
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
        rc = wlm__http_multi_request(c, method, url, token, content_type, body, len, timeout_ms,
                                     fetch_cb, &st, err);
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
