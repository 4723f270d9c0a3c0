/* rt_backend.c - tiny fixed-response HTTP/1.1 backend for router tests and
 * benchmarks (libuv + http-parser, keep-alive).
 *
 * It answers every request with a fixed body after --delay-ms, or after
 * burning CPU for `spin_us` microseconds when the request carries a
 * "X-Spin-Us" header (fairness benchmark). It counts requests in service
 * and the maximum ever seen, and logs the X-Tag header of each request in
 * arrival order: GET /__stats returns
 *   {"requests":N,"current":C,"max_concurrent":M,"spin_us":{"tag":us..},"log":["tag",..]}
 * and GET /__reset clears the counters. Prints the port on stdout. */
#include <getopt.h>
#include <signal.h>
#include <strings.h>
#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

struct conn {
    uv_tcp_t tcp;
    http_parser p;
    char field[64];
    int in_tag, in_spin;
    char tag[64];
    long spin_us;
    int keep_alive;
    int busy; /* a response is pending (no upstream pipelining from the router) */
    int closing;
    uv_timer_t timer;
    int stats, reset;
    char url[128];
    char hdrs[4096]; /* "name: value\n" lines, for /__echo */
    size_t hlen;
};

static int g_delay_ms;
static const char *g_body = "hello from backend\n";
static const char *g_name = "b";
static long g_requests, g_current, g_max;
static char **g_log;
static size_t g_nlog, g_caplog;
#define MAXTAGS 16
static char g_tags[MAXTAGS][64];
static double g_spin[MAXTAGS];
static size_t g_ntags;
static http_parser_settings g_settings;

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static void closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    if (h == (uv_handle_t *)&c->tcp)
        uv_close((uv_handle_t *)&c->timer, closed);
    else
        free(c);
}

static void conn_close(struct conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    if (c->busy)
        g_current--;
    uv_close((uv_handle_t *)&c->tcp, closed);
}

static void wdone(uv_write_t *w, int st)
{
    free(w->data);
    free(w);
}

static void send_resp(struct conn *c, const char *body, size_t blen)
{
    char head[256];
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Backend: %s\r\n"
                      "Content-Length: %zu\r\n%s\r\n",
                      g_name, blen, c->keep_alive ? "" : "Connection: close\r\n");
    char *b = malloc((size_t)hl + blen);
    memcpy(b, head, (size_t)hl);
    memcpy(b + hl, body, blen);
    uv_buf_t buf = uv_buf_init(b, (unsigned)(hl + (int)blen));
    int k = uv_try_write((uv_stream_t *)&c->tcp, &buf, 1);
    if (k == (int)buf.len) {
        free(b);
    } else {
        if (k < 0)
            k = 0;
        uv_write_t *w = malloc(sizeof *w);
        w->data = b;
        buf = uv_buf_init(b + k, buf.len - (unsigned)k);
        uv_write(w, (uv_stream_t *)&c->tcp, &buf, 1, wdone);
    }
}

static void finish(struct conn *c)
{
    if (c->closing)
        return;
    c->busy = 0;
    g_current--;
    send_resp(c, g_body, strlen(g_body));
    if (!c->keep_alive)
        conn_close(c);
}

static void on_timer(uv_timer_t *t)
{
    finish(t->data);
}

static void stats_reply(struct conn *c)
{
    size_t cap = 4096 + g_nlog * 70, n = 0;
    char *b = malloc(cap);
    n += (size_t)snprintf(b + n, cap - n,
                          "{\"requests\":%ld,\"current\":%ld,\"max_concurrent\":%ld,\"spin_us\":{",
                          g_requests, g_current, g_max);
    for (size_t i = 0; i < g_ntags; i++)
        n += (size_t)snprintf(b + n, cap - n, "%s\"%s\":%.0f", i ? "," : "", g_tags[i], g_spin[i]);
    n += (size_t)snprintf(b + n, cap - n, "},\"log\":[");
    for (size_t i = 0; i < g_nlog; i++)
        n += (size_t)snprintf(b + n, cap - n, "%s\"%s\"", i ? "," : "", g_log[i]);
    n += (size_t)snprintf(b + n, cap - n, "]}\n");
    send_resp(c, b, n);
    free(b);
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    size_t l = strlen(c->url);
    if (l + len < sizeof c->url) {
        memcpy(c->url + l, at, len);
        c->url[l + len] = 0;
    }
    return 0;
}

static int on_field(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    if (c->hlen + len + 4 < sizeof c->hdrs) {
        if (c->hlen)
            c->hdrs[c->hlen++] = '\n';
        memcpy(c->hdrs + c->hlen, at, len);
        c->hlen += len;
        c->hdrs[c->hlen++] = ':';
        c->hdrs[c->hlen++] = ' ';
    }
    c->in_tag = len == 5 && strncasecmp(at, "x-tag", 5) == 0;
    c->in_spin = len == 9 && strncasecmp(at, "x-spin-us", 9) == 0;
    return 0;
}

static int on_value(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    if (c->hlen + len + 2 < sizeof c->hdrs) {
        memcpy(c->hdrs + c->hlen, at, len);
        c->hlen += len;
    }
    if (c->in_tag && len < sizeof c->tag) {
        memcpy(c->tag, at, len);
        c->tag[len] = 0;
    }
    if (c->in_spin)
        c->spin_us = strtol(at, NULL, 10);
    return 0;
}

static int on_complete(http_parser *p)
{
    struct conn *c = p->data;
    c->keep_alive = http_should_keep_alive(p);
    if (strcmp(c->url, "/__echo") == 0) {
        c->hdrs[c->hlen++] = '\n';
        send_resp(c, c->hdrs, c->hlen);
    } else if (strcmp(c->url, "/__stats") == 0) {
        stats_reply(c);
    } else if (strcmp(c->url, "/__reset") == 0) {
        g_requests = g_max = 0;
        for (size_t i = 0; i < g_nlog; i++)
            free(g_log[i]);
        g_nlog = 0;
        g_ntags = 0;
        memset(g_spin, 0, sizeof g_spin);
        send_resp(c, "ok\n", 3);
    } else {
        g_requests++;
        g_current++;
        if (g_current > g_max)
            g_max = g_current;
        c->busy = 1;
        if (c->tag[0]) {
            if (g_nlog == g_caplog) {
                g_caplog = g_caplog ? g_caplog * 2 : 1024;
                g_log = realloc(g_log, g_caplog * sizeof *g_log);
            }
            g_log[g_nlog++] = strdup(c->tag);
        }
        if (c->spin_us > 0) {
            /* Burn CPU synchronously: the backend is one CPU shared by all. */
            double t0 = now_us();
            while (now_us() - t0 < (double)c->spin_us)
                ;
            size_t i;
            for (i = 0; i < g_ntags; i++)
                if (strcmp(g_tags[i], c->tag) == 0)
                    break;
            if (i == g_ntags && g_ntags < MAXTAGS)
                snprintf(g_tags[g_ntags++], 64, "%s", c->tag);
            if (i < MAXTAGS)
                g_spin[i] += (double)c->spin_us;
        }
        if (g_delay_ms > 0)
            uv_timer_start(&c->timer, on_timer, (uint64_t)g_delay_ms, 0);
        else
            finish(c);
    }
    c->tag[0] = 0;
    c->url[0] = 0;
    c->hlen = 0;
    c->spin_us = 0;
    return 0;
}

static void alloc_cb(uv_handle_t *h, size_t s, uv_buf_t *b)
{
    static char buf[65536];
    *b = uv_buf_init(buf, sizeof buf);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct conn *c = s->data;
    if (n == 0) /* EAGAIN: nothing read (not EOF) */
        return;
    if (n < 0) {
        conn_close(c);
        return;
    }
    size_t k = http_parser_execute(&c->p, &g_settings, b->base, (size_t)n);
    if (k != (size_t)n && !c->p.upgrade) {
        fprintf(stderr, "rt_backend: parse error %s\n", http_errno_name(HTTP_PARSER_ERRNO(&c->p)));
        conn_close(c);
    }
}

static void on_conn(uv_stream_t *l, int st)
{
    struct conn *c = calloc(1, sizeof *c);
    uv_tcp_init(l->loop, &c->tcp);
    uv_timer_init(l->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    if (uv_accept(l, (uv_stream_t *)&c->tcp)) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    http_parser_init(&c->p, HTTP_REQUEST);
    c->p.data = c;
    uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, on_read);
}

int main(int argc, char **argv)
{
    int port = 0, opt;
    static const struct option lo[] = {{"port", 1, 0, 'p'},  {"delay-ms", 1, 0, 'd'},
                                       {"body", 1, 0, 'b'},  {"name", 1, 0, 'n'},
                                       {"help", 0, 0, 'h'},  {0, 0, 0, 0}};
    while ((opt = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (opt) {
        case 'p': port = atoi(optarg); break;
        case 'd': g_delay_ms = atoi(optarg); break;
        case 'b': g_body = optarg; break;
        case 'n': g_name = optarg; break;
        case 'h':
            printf("Usage: rt_backend [--port P] [--delay-ms D] [--body TEXT] [--name N]\n");
            return 0;
        default: fprintf(stderr, "rt_backend: bad option\n"); return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    http_parser_settings_init(&g_settings);
    g_settings.on_url = on_url;
    g_settings.on_header_field = on_field;
    g_settings.on_header_value = on_value;
    g_settings.on_message_complete = on_complete;
    uv_loop_t *loop = uv_default_loop();
    uv_tcp_t srv;
    uv_tcp_init(loop, &srv);
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", port, &a);
    if (uv_tcp_bind(&srv, (struct sockaddr *)&a, 0) ||
        uv_listen((uv_stream_t *)&srv, 1024, on_conn)) {
        fprintf(stderr, "rt_backend: cannot listen on %d\n", port);
        return 1;
    }
    struct sockaddr_in got;
    int gl = sizeof got;
    uv_tcp_getsockname(&srv, (struct sockaddr *)&got, &gl);
    printf("%d\n", ntohs(got.sin_port));
    fflush(stdout);
    return uv_run(loop, UV_RUN_DEFAULT);
}
