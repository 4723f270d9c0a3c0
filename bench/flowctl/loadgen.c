/* loadgen.c - see loadgen.h. */
#include "loadgen.h"

#include <errno.h>
#include <fcntl.h>
#include <http_parser.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct lg_conn;

struct lg_stream {
    struct lg *g;
    char *path, *headers;
    double rate, next; /* next arrival, lg_now() seconds */
    uv_timer_t timer;
    struct lg_stats st;
    struct lg_stream *next_s;
};

struct lg_conn {
    uv_tcp_t tcp;
    uv_connect_t connect;
    http_parser parser;
    struct lg *g;
    int connected, busy, closing, keep, oneoff;
    struct lg_stream *stream; /* NULL for a one-off request */
    lg_done_cb cb;
    void *ud;
    char *body;
    size_t body_len;
    double t0;
    char *pending; /* request bytes to write once connected */
    size_t pending_len;
    struct lg_conn *next_idle;
};

struct lg {
    uv_loop_t *loop;
    struct sockaddr_in addr;
    char hostport[64];
    struct lg_conn *idle;
    struct lg_stream *streams;
    http_parser_settings settings;
    uint64_t rng;
};

double lg_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double lg_exp(struct lg *g, double mean)
{
    g->rng ^= g->rng << 13;
    g->rng ^= g->rng >> 7;
    g->rng ^= g->rng << 17;
    double u = ((g->rng >> 11) + 0.5) / 9007199254740992.0;
    return -mean * log(u);
}

static void conn_closed(uv_handle_t *h)
{
    struct lg_conn *c = h->data;
    free(c->body);
    free(c->pending);
    free(c);
}

static void conn_close(struct lg_conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    /* Remove from the idle list if it is there. */
    for (struct lg_conn **p = &c->g->idle; *p; p = &(*p)->next_idle)
        if (*p == c) {
            *p = c->next_idle;
            break;
        }
    uv_close((uv_handle_t *)&c->tcp, conn_closed);
}

static void finish(struct lg_conn *c, int status)
{
    if (!c->busy)
        return;
    c->busy = 0;
    double rt = lg_now() - c->t0;
    if (c->stream) {
        struct lg_stats *st = &c->stream->st;
        if (status == 200) {
            st->ok++;
            st->sum_rt += rt;
            if (rt > st->max_rt)
                st->max_rt = rt;
            if (st->nrts < sizeof st->rts / sizeof st->rts[0])
                st->rts[st->nrts++] = rt;
        } else if (status == 503) {
            st->s503++;
        } else if (status == 0) {
            st->errors++;
        } else {
            st->other++;
        }
    } else if (c->cb) {
        c->cb(status, c->body, c->body_len, c->ud);
    }
    c->cb = NULL;
    free(c->body);
    c->body = NULL;
    c->body_len = 0;
    c->stream = NULL;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct lg_conn *c = p->data;
    if (c->stream)
        return 0;
    char *nb = realloc(c->body, c->body_len + len + 1);
    if (!nb)
        return -1;
    memcpy(nb + c->body_len, at, len);
    c->body = nb;
    c->body_len += len;
    c->body[c->body_len] = 0;
    return 0;
}

static int on_complete(http_parser *p)
{
    struct lg_conn *c = p->data;
    c->keep = http_should_keep_alive(p);
    finish(c, p->status_code);
    return 0;
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)h;
    (void)hint;
    static char slab[65536];
    buf->base = slab;
    buf->len = sizeof slab;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct lg_conn *c = s->data;
    if (n < 0) {
        finish(c, 0);
        conn_close(c);
        return;
    }
    size_t used = http_parser_execute(&c->parser, &c->g->settings, buf->base, (size_t)n);
    if (used != (size_t)n) {
        finish(c, 0);
        conn_close(c);
        return;
    }
    if (!c->busy && !c->closing) {
        if (c->keep && !c->oneoff) {
            c->next_idle = c->g->idle;
            c->g->idle = c;
        } else {
            conn_close(c);
        }
    }
}

static void on_write(uv_write_t *w, int status)
{
    struct lg_conn *c = w->data;
    free(w);
    if (status < 0) {
        finish(c, 0);
        conn_close(c);
    }
}

static void conn_write(struct lg_conn *c, const char *data, size_t len)
{
    uv_write_t *w = malloc(sizeof *w + len);
    if (!w) {
        finish(c, 0);
        conn_close(c);
        return;
    }
    char *copy = (char *)(w + 1);
    memcpy(copy, data, len);
    w->data = c;
    uv_buf_t b = uv_buf_init(copy, (unsigned)len);
    if (uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, on_write) < 0) {
        free(w);
        finish(c, 0);
        conn_close(c);
    }
}

static void on_connect(uv_connect_t *req, int status)
{
    struct lg_conn *c = req->data;
    if (status < 0) {
        finish(c, 0);
        conn_close(c);
        return;
    }
    c->connected = 1;
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (c->pending) {
        conn_write(c, c->pending, c->pending_len);
        free(c->pending);
        c->pending = NULL;
    }
}

static struct lg_conn *conn_get(struct lg *g, int fresh)
{
    if (!fresh && g->idle) {
        struct lg_conn *c = g->idle;
        g->idle = c->next_idle;
        return c;
    }
    struct lg_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->g = g;
    uv_tcp_init(g->loop, &c->tcp);
    c->tcp.data = c;
    c->connect.data = c;
    http_parser_init(&c->parser, HTTP_RESPONSE);
    c->parser.data = c;
    if (uv_tcp_connect(&c->connect, &c->tcp, (struct sockaddr *)&g->addr, on_connect) < 0) {
        c->closing = 1;
        uv_close((uv_handle_t *)&c->tcp, conn_closed);
        return NULL;
    }
    return c;
}

static void send_req(struct lg *g, struct lg_conn *c, const char *method, const char *path,
                     const char *headers, const char *body)
{
    size_t blen = body ? strlen(body) : 0;
    size_t cap = strlen(path) + (headers ? strlen(headers) : 0) + blen + 256;
    char *buf = malloc(cap);
    if (!buf) {
        finish(c, 0);
        conn_close(c);
        return;
    }
    int n = snprintf(buf, cap,
                     "%s %s HTTP/1.1\r\nHost: %s\r\n%s%sContent-Length: %zu\r\n\r\n%s", method,
                     path, g->hostport, headers ? headers : "",
                     body ? "Content-Type: application/json\r\n" : "", blen, body ? body : "");
    c->busy = 1;
    c->t0 = lg_now();
    if (c->connected) {
        conn_write(c, buf, (size_t)n);
        free(buf);
    } else {
        c->pending = buf;
        c->pending_len = (size_t)n;
    }
}

static void stream_fire(uv_timer_t *t);

static void stream_arm(struct lg_stream *s)
{
    if (s->rate <= 0)
        return;
    double wait = s->next - lg_now();
    uv_timer_start(&s->timer, stream_fire, wait > 0 ? (uint64_t)(wait * 1000) : 0, 0);
}

static void stream_fire(uv_timer_t *t)
{
    struct lg_stream *s = t->data;
    double now = lg_now();
    while (s->rate > 0 && s->next <= now) {
        struct lg_conn *c = conn_get(s->g, 0);
        if (c) {
            c->stream = s;
            s->st.sent++;
            send_req(s->g, c, "GET", s->path, s->headers, NULL);
        } else {
            s->st.sent++;
            s->st.errors++;
        }
        s->next += lg_exp(s->g, 1 / s->rate);
    }
    stream_arm(s);
}

struct lg *lg_new(uv_loop_t *loop, const char *host, int port)
{
    struct lg *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->loop = loop;
    uv_ip4_addr(host, port, &g->addr);
    snprintf(g->hostport, sizeof g->hostport, "%s:%d", host, port);
    g->settings.on_body = on_body;
    g->settings.on_message_complete = on_complete;
    g->rng = 0x9E3779B97F4A7C15ull ^ (uint64_t)port;
    return g;
}

static void stream_closed(uv_handle_t *h)
{
    struct lg_stream *s = h->data;
    free(s->path);
    free(s->headers);
    free(s);
}

static void walk_close(uv_handle_t *h, void *arg)
{
    struct lg *g = arg;
    if (uv_is_closing(h) || h->type != UV_TCP)
        return;
    struct lg_conn *c = h->data;
    if (c && c->g == g)
        conn_close(c);
}

void lg_free(struct lg *g)
{
    if (!g)
        return;
    while (g->streams) {
        struct lg_stream *s = g->streams;
        g->streams = s->next_s;
        uv_close((uv_handle_t *)&s->timer, stream_closed);
    }
    uv_walk(g->loop, walk_close, g);
    uv_run(g->loop, UV_RUN_NOWAIT);
    free(g);
}

struct lg_stream *lg_stream_add(struct lg *g, const char *path, const char *headers, double rate)
{
    struct lg_stream *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->g = g;
    s->path = strdup(path);
    s->headers = headers ? strdup(headers) : NULL;
    uv_timer_init(g->loop, &s->timer);
    s->timer.data = s;
    s->next_s = g->streams;
    g->streams = s;
    lg_stream_set_rate(s, rate);
    return s;
}

void lg_stream_set_rate(struct lg_stream *s, double rate)
{
    s->rate = rate;
    uv_timer_stop(&s->timer);
    if (rate > 0) {
        s->next = lg_now() + lg_exp(s->g, 1 / rate);
        stream_arm(s);
    }
}

void lg_stream_take(struct lg_stream *s, struct lg_stats *out)
{
    *out = s->st;
    memset(&s->st, 0, sizeof s->st);
}

double lg_stats_mean(const struct lg_stats *st)
{
    return st->ok ? st->sum_rt / st->ok : NAN;
}

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double lg_stats_pct(struct lg_stats *st, double p)
{
    if (!st->nrts)
        return NAN;
    qsort(st->rts, st->nrts, sizeof st->rts[0], cmpd);
    size_t i = (size_t)(p * (st->nrts - 1));
    return st->rts[i];
}

int lg_request(struct lg *g, const char *method, const char *path, const char *body, lg_done_cb cb,
               void *ud)
{
    struct lg_conn *c = conn_get(g, 1);
    if (!c)
        return -1;
    c->cb = cb;
    c->ud = ud;
    c->oneoff = 1;
    send_req(g, c, method, path, "Connection: close\r\n", body);
    return 0;
}

struct sync_ctx {
    int done, status;
    char *body;
};

static void sync_cb(int status, const char *body, size_t len, void *ud)
{
    struct sync_ctx *x = ud;
    x->done = 1;
    x->status = status;
    if (body) {
        x->body = malloc(len + 1);
        if (x->body) {
            memcpy(x->body, body, len);
            x->body[len] = 0;
        }
    }
}

int lg_request_sync(struct lg *g, const char *method, const char *path, const char *body,
                    char **body_out)
{
    struct sync_ctx x = {0, 0, NULL};
    if (lg_request(g, method, path, body, sync_cb, &x))
        return 0;
    while (!x.done)
        uv_run(g->loop, UV_RUN_ONCE);
    if (body_out)
        *body_out = x.body;
    else
        free(x.body);
    return x.status;
}

int lg_spawn(char *const argv[], const char *log)
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        if (log) {
            int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (fd >= 0) {
                dup2(fd, 1);
                dup2(fd, 2);
                close(fd);
            }
        }
        execv(argv[0], argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    return pid;
}

int lg_wait_port(const char *path, double timeout_s)
{
    double end = lg_now() + timeout_s;
    while (lg_now() < end) {
        FILE *f = fopen(path, "r");
        int port = 0;
        if (f) {
            if (fscanf(f, "%d", &port) != 1)
                port = 0;
            fclose(f);
        }
        if (port > 0)
            return port;
        usleep(20000);
    }
    return -1;
}
