/*
 * http_test_util.h - a wlm HTTP server on a loop thread, and a raw-socket
 * client that reads responses byte for byte, for the HTTP tests.
 */
#ifndef WLM_HTTP_TEST_UTIL_H
#define WLM_HTTP_TEST_UTIL_H

#include <pthread.h>
#include <stdatomic.h>

#include "common.h"

/* A server running on its own loop thread. `setup` runs on the calling thread
 * before the loop starts: add routes there. */
struct test_server {
    uv_loop_t loop;
    uv_async_t stop;
    pthread_t thread;
    struct wlm_http_server *srv;
    struct wlm_metrics *metrics;
    int port;
    atomic_int closed; /* the server's close callback ran */
};

int test_server_start(struct test_server *ts, const struct wlm_http_server_opts *opts,
                      void (*setup)(struct test_server *ts, void *arg), void *arg);
void test_server_stop(struct test_server *ts);
/* On the loop thread: close the server now (handlers use it). */
void test_server_close_now(struct test_server *ts);

/* Raw socket with a read buffer. Every read gives up after 5 s. */
struct raw {
    int fd;
    char buf[1 << 16];
    size_t len;
};

int raw_connect(struct raw *r, int port);
void raw_close(struct raw *r);
int raw_send(struct raw *r, const char *data, size_t len);
int raw_sends(struct raw *r, const char *s);

/* One parsed response. */
struct raw_resp {
    int status;
    char head[8192]; /* status line and headers as received */
    char *body;      /* de-chunked, NUL-terminated; caller frees */
    size_t body_len;
};

/* Read one response; `head_only` for HEAD requests and 1xx. Returns 0, or -1
 * on EOF/timeout/garbage. */
int raw_read_response(struct raw *r, struct raw_resp *out, int head_only);
/* A header's value from out->head (case-insensitive), copied into buf. */
const char *raw_header(const struct raw_resp *resp, const char *name, char *buf, size_t size);
/* 1 when the peer closed the connection (EOF within 5 s with no more data). */
int raw_wait_eof(struct raw *r);
/* A port nobody listens on (bound, then closed). */
int free_port(void);

#endif
