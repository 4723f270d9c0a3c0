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
 *
 * The pieces: http_server.c (this: the server object, listening, accepting,
 * closing), http_server_conn.c (a connection's I/O), http_server_parse.c
 * (parser callbacks), http_server_route.c (routes and dispatch),
 * http_server_request.c (requests and responses), http_server_tls.c (HTTPS);
 * their shared types are in http_server_internal.h.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http_server_internal.h"

void wlm__http_server_maybe_done(struct wlm_http_server *srv)
{
    if (!srv->closing || srv->nconns || srv->listener_open)
        return;
    while (srv->orphans) {
        struct http_sreq *r = srv->orphans;
        wlm__http_orphan_remove(srv, r);
        wlm__http_sreq_free(r);
    }
    wlm__http_routes_free(srv);
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
        wlm__http_conn_close(conn);
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
        wlm__http_conn_close(conn);
        return;
    }
    http_parser_init(&conn->parser, HTTP_REQUEST);
    conn->parser.data = conn;
    if (srv->nconns > srv->max_connections) {
        wlm__http_conn_reject(conn, 503, "unavailable", "too many connections");
        return;
    }
    wlm__http_conn_start_reading(conn);
    wlm__http_conn_update_timer(conn);
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
    wlm__http_server_maybe_done(srv);
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
            wlm__http_conn_finish(c);
        } else {
            wlm__http_conn_close(c);
        }
    }
    uv_close((uv_handle_t *)&s->listener, listener_close_cb);
}
