/*
 * http_client_request.c - a client request's life: finding it a connection (an
 * idle one from the pool, or a new one after resolving the host), its deadline,
 * delivering its outcome exactly once, and releasing it.
 */
#include <stdlib.h>
#include <string.h>

#include "http_client_internal.h"

void wlm__http_client_unref(struct wlm_http_client *c)
{
    if (--c->alive == 0 && c->closing) {
        SSL_CTX_free(c->tls_ctx);
        free(c);
    }
}

void wlm__http_creq_maybe_free(struct creq *r)
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
    wlm__http_client_unref(c);
}

static void creq_timer_closed(uv_handle_t *h)
{
    struct creq *r = h->data;
    r->timer_closed = 1;
    wlm__http_creq_maybe_free(r);
}

/* Deliver the outcome exactly once; the request is released afterwards. */
void wlm__http_creq_finish(struct creq *r, const struct wlm_http_response *resp,
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

void wlm__http_creq_fail(struct creq *r, int code_abs, const char *fmt, ...)
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
            uv_timer_start(&r->timer, wlm__http_creq_timer, 0, 0);
        }
        return;
    }
    wlm__http_creq_finish(r, NULL, &err);
}

static void creq_resolved(uv_getaddrinfo_t *g, int status, struct addrinfo *res)
{
    struct creq *r = g->data;
    r->gai_pending = 0;
    if (r->done) {
        uv_freeaddrinfo(res);
        wlm__http_creq_maybe_free(r);
        return;
    }
    if (status < 0 || !res) {
        uv_freeaddrinfo(res);
        wlm__http_creq_fail(r, WLM_EIO, "resolve %s: %s", r->host,
                            uv_strerror(status ? status : UV_EAI_NONAME));
        return;
    }
    if (r->ai) /* a retry resolved again */
        uv_freeaddrinfo(r->ai);
    r->ai = res;
    r->ai_next = res->ai_next;
    wlm__http_creq_connect(r, res->ai_addr);
}

/* Send on an idle connection to the same host:port, or open one. */
void wlm__http_creq_start(struct creq *r)
{
    struct wlm_http_client *c = r->c;
    for (struct cconn *x = c->conns; x; x = x->next) {
        if (x->idle && !x->closing && x->https == r->https && strcmp(x->key, r->key) == 0) {
            x->idle = 0;
            x->reused = 1;
            uv_ref((uv_handle_t *)&x->tcp);
            x->req = r;
            r->conn = x;
            wlm__http_cconn_send(x);
            return;
        }
    }
    struct sockaddr_storage ss;
    if (uv_ip4_addr(r->host, r->port, (struct sockaddr_in *)&ss) == 0 ||
        uv_ip6_addr(r->host, r->port, (struct sockaddr_in6 *)&ss) == 0) {
        wlm__http_creq_connect(r, (struct sockaddr *)&ss);
        return;
    }
    char port[16];
    snprintf(port, sizeof(port), "%d", r->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    r->gai.data = r;
    int rc = uv_getaddrinfo(c->loop, &r->gai, creq_resolved, r->host, port, &hints);
    if (rc) {
        wlm__http_creq_fail(r, WLM_EIO, "resolve %s: %s", r->host, uv_strerror(rc));
        return;
    }
    r->gai_pending = 1;
}

void wlm__http_creq_timer(uv_timer_t *t)
{
    struct creq *r = t->data;
    if (r->early.code) {
        wlm__http_creq_finish(r, NULL, &r->early);
        return;
    }
    struct cconn *conn = r->conn;
    if (conn) {
        /* The connection's state is unknown mid-request: drop it. */
        conn->req = NULL;
        r->conn = NULL;
        wlm__http_cconn_close(conn);
    }
    wlm__http_creq_fail(r, WLM_ETIMEOUT, "%s: timed out after %u ms", r->desc, r->timeout_ms);
}
