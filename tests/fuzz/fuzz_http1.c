/* fuzz_http1.c - libFuzzer target: HTTP/1 requests through common's server.
 *
 * The real wlm_http_server (common/http_server.c) listens on a loopback port
 * of an in-process libuv loop; each input is sent over a fresh TCP
 * connection, in two writes split at a point chosen by the first byte (so
 * heads split at odd places), then the write side is shut down and the loop
 * runs until the server has answered and closed. Routes cover what daemons
 * use: public and token-protected routes, ":id" parameters, a "*" suffix,
 * JSON bodies, chunked streaming and answers from a later loop turn (with
 * on_abort when the peer leaves first). Limits are small so 413/431 paths
 * are reached. Any crash, leak or sanitizer report is a finding; the bytes
 * received must start with an HTTP/1.1 status line when any arrive. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <uv.h>

#include "common.h"

#define TOKEN "fuzz-secret-token"
#define MAX_PENDING 64

static uv_loop_t loop;
static struct wlm_http_server *srv;
static struct wlm_metrics *metrics;
static int port;
static uv_check_t later;
static struct wlm_http_req *pending[MAX_PENDING];

static void h_text(struct wlm_http_req *req, void *ud)
{
    (void)ud;
    wlm_http_respond(req, 200, "text/plain", NULL, "ok\n", 3);
}

static void h_json(struct wlm_http_req *req, void *ud)
{
    (void)ud;
    json_error_t e;
    json_t *in = json_loadb(req->body, req->body_len, 0, &e);
    if (!in) {
        wlm_http_respond_error(req, 400, "invalid", "body: %s", e.text);
        return;
    }
    json_t *out = json_pack("{s:i,s:s?,s:s?}", "n", (json_int_t)json_object_size(in), "param",
                            req->nparams ? req->params[0] : NULL, "q", req->query);
    json_decref(in);
    wlm_http_respond_json(req, 201, out);
}

static void h_param(struct wlm_http_req *req, void *ud)
{
    (void)ud;
    char *v = wlm_http_req_query(req, "v");
    const char *ua = wlm_http_req_header(req, "user-agent");
    wlm_http_respond_json(req, 200,
                          json_pack("{s:s,s:s?,s:s?}", "id", req->params[0], "v", v, "ua", ua));
    free(v);
}

static void h_stream(struct wlm_http_req *req, void *ud)
{
    (void)ud;
    if (wlm_http_stream_begin(req, 200, "text/event-stream", NULL) == 0) {
        wlm_http_stream_write(req, "data: 1\n\n", 9);
        wlm_http_stream_write(req, "data: 2\n\n", 9);
    }
    wlm_http_stream_end(req);
}

static void pending_abort(struct wlm_http_req *req)
{
    for (int i = 0; i < MAX_PENDING; i++)
        if (pending[i] == req)
            pending[i] = NULL;
}

static void h_later(struct wlm_http_req *req, void *ud)
{
    (void)ud;
    for (int i = 0; i < MAX_PENDING; i++)
        if (!pending[i]) {
            pending[i] = req;
            req->on_abort = pending_abort;
            return;
        }
    wlm_http_respond_error(req, 503, "busy", "too many pending");
}

static void later_cb(uv_check_t *c)
{
    (void)c;
    for (int i = 0; i < MAX_PENDING; i++) {
        struct wlm_http_req *req = pending[i];
        if (req) {
            pending[i] = NULL;
            wlm_http_respond(req, 202, "application/json", "X-Later: 1", "{}", 2);
        }
    }
}

static void setup(void)
{
    wlm_log_set_level(WLM_LOG_OFF);
    uv_loop_init(&loop);
    struct wlm_http_server_opts o = {.host = "127.0.0.1",
                                     .max_header_bytes = 2048,
                                     .max_body_bytes = 4096,
                                     .header_timeout_ms = 1000,
                                     .idle_timeout_ms = 1000,
                                     .max_connections = 64,
                                     .token = TOKEN};
    srv = wlm_http_server_new(&loop, &o);
    metrics = wlm_metrics_new();
    if (!srv || !metrics)
        abort();
    wlm_http_server_set_metrics(srv, metrics);
    wlm_http_server_route(srv, "GET", "/healthz", 0, h_text, NULL);
    wlm_http_server_route(srv, "POST", "/v1/items", 1, h_json, NULL);
    wlm_http_server_route(srv, "PUT", "/v1/items/:id", 1, h_json, NULL);
    wlm_http_server_route(srv, "GET", "/v1/items/:id", 1, h_param, NULL);
    wlm_http_server_route(srv, "GET", "/v1/events", 0, h_stream, NULL);
    wlm_http_server_route(srv, NULL, "/v1/later/*", 0, h_later, NULL);
    struct wlm_error err = {0};
    if (wlm_http_server_listen(srv, &err) != 0)
        abort();
    port = wlm_http_server_port(srv);
    uv_check_init(&loop, &later);
    uv_check_start(&later, later_cb);
}

struct client {
    uv_tcp_t tcp;
    uv_connect_t conn;
    uv_write_t w[2];
    uv_shutdown_t sd;
    uv_timer_t guard;
    const uint8_t *data;
    size_t size, split;
    char head[16];
    size_t nhead, total;
    int closed_handles;
};

static void on_closed(uv_handle_t *h)
{
    struct client *c = h->data;
    c->closed_handles++;
}

static void client_done(struct client *c)
{
    if (!uv_is_closing((uv_handle_t *)&c->tcp)) {
        uv_close((uv_handle_t *)&c->tcp, on_closed);
        uv_close((uv_handle_t *)&c->guard, on_closed);
    }
}

static void alloc_cb(uv_handle_t *h, size_t sug, uv_buf_t *b)
{
    (void)h;
    static char buf[65536];
    (void)sug;
    *b = uv_buf_init(buf, sizeof buf);
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct client *c = s->data;
    if (n < 0) {
        client_done(c);
        return;
    }
    size_t take = (size_t)n;
    if (c->nhead < sizeof c->head) {
        size_t k = sizeof c->head - c->nhead < take ? sizeof c->head - c->nhead : take;
        memcpy(c->head + c->nhead, b->base, k);
        c->nhead += k;
    }
    c->total += take;
}

static void write_cb(uv_write_t *w, int st)
{
    (void)w;
    (void)st;
}

static void shutdown_cb(uv_shutdown_t *sd, int st)
{
    (void)sd;
    (void)st;
}

static void connect_cb(uv_connect_t *cr, int st)
{
    struct client *c = cr->data;
    if (st < 0) {
        client_done(c);
        return;
    }
    uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
    uv_buf_t a = uv_buf_init((char *)c->data, (unsigned)c->split);
    uv_buf_t b = uv_buf_init((char *)c->data + c->split, (unsigned)(c->size - c->split));
    if (c->split)
        uv_write(&c->w[0], (uv_stream_t *)&c->tcp, &a, 1, write_cb);
    if (c->size - c->split)
        uv_write(&c->w[1], (uv_stream_t *)&c->tcp, &b, 1, write_cb);
    uv_shutdown(&c->sd, (uv_stream_t *)&c->tcp, shutdown_cb);
}

static void guard_cb(uv_timer_t *t)
{
    client_done(t->data);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!srv)
        setup();
    if (size < 1)
        return 0;
    struct client c = {0};
    c.data = data + 1;
    c.size = size - 1;
    c.split = c.size ? (size_t)data[0] * c.size / 256 : 0;
    uv_tcp_init(&loop, &c.tcp);
    uv_timer_init(&loop, &c.guard);
    c.tcp.data = c.guard.data = c.conn.data = &c;
    uv_timer_start(&c.guard, guard_cb, 3000, 0);
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", port, &sa);
    if (uv_tcp_connect(&c.conn, &c.tcp, (const struct sockaddr *)&sa, connect_cb) != 0)
        abort();
    while (c.closed_handles < 2)
        uv_run(&loop, UV_RUN_ONCE);
    /* Let the server finish closing its side of the connection. */
    for (int i = 0; i < 8; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    if (c.nhead > 0 && (c.nhead < 9 || memcmp(c.head, "HTTP/1.1 ", 9) != 0))
        abort();
    return 0;
}
