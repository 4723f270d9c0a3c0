/* http_test_util.c - see http_test_util.h. */
#include "http_test_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static void *loop_main(void *arg)
{
    struct test_server *ts = arg;
    uv_run(&ts->loop, UV_RUN_DEFAULT);
    return NULL;
}

static void server_done(void *ud)
{
    struct test_server *ts = ud;
    atomic_store(&ts->closed, 1);
}

void test_server_close_now(struct test_server *ts)
{
    if (ts->srv)
        wlm_http_server_close(ts->srv, server_done, ts);
    ts->srv = NULL;
}

static void on_stop(uv_async_t *a)
{
    struct test_server *ts = a->data;
    test_server_close_now(ts);
    uv_close((uv_handle_t *)&ts->stop, NULL);
}

int test_server_start(struct test_server *ts, const struct wlm_http_server_opts *opts,
                      void (*setup)(struct test_server *ts, void *arg), void *arg)
{
    memset(ts, 0, sizeof(*ts));
    if (uv_loop_init(&ts->loop))
        return -1;
    ts->srv = wlm_http_server_new(&ts->loop, opts);
    if (!ts->srv)
        return -1;
    ts->metrics = wlm_metrics_new();
    wlm_http_server_set_metrics(ts->srv, ts->metrics);
    if (setup)
        setup(ts, arg);
    struct wlm_error err = {0};
    if (wlm_http_server_listen(ts->srv, &err)) {
        fprintf(stderr, "listen: %s\n", err.msg);
        return -1;
    }
    ts->port = wlm_http_server_port(ts->srv);
    uv_async_init(&ts->loop, &ts->stop, on_stop);
    ts->stop.data = ts;
    return pthread_create(&ts->thread, NULL, loop_main, ts) ? -1 : 0;
}

void test_server_stop(struct test_server *ts)
{
    uv_async_send(&ts->stop);
    pthread_join(ts->thread, NULL);
    uv_run(&ts->loop, UV_RUN_DEFAULT); /* nothing should be left */
    if (!atomic_load(&ts->closed))
        fprintf(stderr, "test server: close callback did not run\n");
    uv_loop_close(&ts->loop);
    wlm_metrics_free(ts->metrics);
}

int raw_connect(struct raw *r, int port)
{
    r->len = 0;
    r->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (r->fd < 0)
        return -1;
    struct timeval tv = {.tv_sec = 5};
    setsockopt(r->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    int one = 1;
    setsockopt(r->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(r->fd, (struct sockaddr *)&a, sizeof(a))) {
        close(r->fd);
        r->fd = -1;
        return -1;
    }
    return 0;
}

void raw_close(struct raw *r)
{
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
}

int raw_send(struct raw *r, const char *data, size_t len)
{
    while (len) {
        ssize_t n = send(r->fd, data, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

int raw_sends(struct raw *r, const char *s)
{
    return raw_send(r, s, strlen(s));
}

/* Read more bytes into the buffer: >0 read, 0 EOF, -1 error/timeout. */
static int fill(struct raw *r)
{
    if (r->len >= sizeof(r->buf) - 1)
        return -1;
    ssize_t n;
    do
        n = recv(r->fd, r->buf + r->len, sizeof(r->buf) - 1 - r->len, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -1;
    r->len += (size_t)n;
    r->buf[r->len] = '\0';
    return (int)n;
}

static void consume(struct raw *r, size_t n)
{
    memmove(r->buf, r->buf + n, r->len - n);
    r->len -= n;
    r->buf[r->len] = '\0';
}

/* Bytes up to and including the next CRLF; returns the length or -1. */
static long read_line(struct raw *r)
{
    for (;;) {
        char *p = memmem(r->buf, r->len, "\r\n", 2);
        if (p)
            return (long)(p - r->buf) + 2;
        if (fill(r) <= 0)
            return -1;
    }
}

static int read_exact(struct raw *r, size_t n)
{
    while (r->len < n)
        if (fill(r) <= 0)
            return -1;
    return 0;
}

const char *raw_header(const struct raw_resp *resp, const char *name, char *buf, size_t size)
{
    size_t nl = strlen(name);
    const char *p = strstr(resp->head, "\r\n");
    while (p && p[2]) {
        p += 2;
        if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ')
                v++;
            const char *e = strstr(v, "\r\n");
            size_t l = e ? (size_t)(e - v) : strlen(v);
            if (l >= size)
                l = size - 1;
            memcpy(buf, v, l);
            buf[l] = '\0';
            return buf;
        }
        p = strstr(p, "\r\n");
    }
    return NULL;
}

int raw_read_response(struct raw *r, struct raw_resp *out, int head_only)
{
    memset(out, 0, sizeof(*out));
    char *end;
    while (!(end = memmem(r->buf, r->len, "\r\n\r\n", 4)))
        if (fill(r) <= 0)
            return -1;
    size_t hl = (size_t)(end - r->buf) + 4;
    if (hl >= sizeof(out->head))
        return -1;
    memcpy(out->head, r->buf, hl);
    out->head[hl] = '\0';
    consume(r, hl);
    if (sscanf(out->head, "HTTP/1.%*d %d", &out->status) != 1)
        return -1;
    char v[64];
    struct wlm_buf body;
    wlm_buf_init(&body);
    if (head_only || out->status < 200 || out->status == 204 || out->status == 304) {
        /* no body */
    } else if (raw_header(out, "Transfer-Encoding", v, sizeof(v)) && strcasecmp(v, "chunked") == 0) {
        for (;;) {
            long l = read_line(r);
            if (l < 0)
                goto fail;
            size_t sz = strtoul(r->buf, NULL, 16);
            consume(r, (size_t)l);
            if (sz == 0) {
                if (read_line(r) != 2) /* no trailers expected */
                    goto fail;
                consume(r, 2);
                break;
            }
            if (read_exact(r, sz + 2))
                goto fail;
            wlm_buf_append(&body, r->buf, sz);
            consume(r, sz + 2);
        }
    } else if (raw_header(out, "Content-Length", v, sizeof(v))) {
        size_t n = strtoul(v, NULL, 10);
        if (read_exact(r, n))
            goto fail;
        wlm_buf_append(&body, r->buf, n);
        consume(r, n);
    } else {
        int n;
        while ((n = fill(r)) > 0)
            ;
        if (n < 0)
            goto fail;
        wlm_buf_append(&body, r->buf, r->len);
        consume(r, r->len);
    }
    out->body_len = body.len;
    out->body = wlm_buf_steal(&body);
    return 0;
fail:
    wlm_buf_fini(&body);
    return -1;
}

int raw_wait_eof(struct raw *r)
{
    for (;;) {
        int n = fill(r);
        if (n == 0)
            return 1;
        if (n < 0)
            return errno == ECONNRESET ? 1 : 0;
    }
}

int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t l = sizeof(a);
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &l) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}
