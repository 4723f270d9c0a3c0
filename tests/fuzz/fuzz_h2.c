/* fuzz_h2.c - libFuzzer target: HTTP/2 (h2c) input through wlm-router.
 *
 * router.h exposes no function that takes raw HTTP/2 bytes, so the target
 * drives the real gateway (router_new/router_run, the same nghttp2 server
 * session and callbacks wlm-router uses) in a thread on loopback, with an
 * in-process backend (common's HTTP server, another thread) behind it.
 * Each input goes over a fresh TCP connection: with the client preface
 * prepended when the first byte is even (prior-knowledge h2c), raw
 * otherwise (so the HTTP/1 "Upgrade: h2c" path is reached too). The client
 * then half-closes and reads until the router closes (1 s cap). A crash or
 * sanitizer report in either thread is a finding.
 *
 * Requests for host "ws" go to a second, raw backend that answers any
 * "Upgrade: websocket" with 101 and then echoes bytes, so inputs reach the
 * tunnel code (the router's Upgrade pass-through) with arbitrary bytes after
 * the handshake; streamed bodies (chunked, Content-Length, h2 DATA) go to the
 * first backend through the router's streaming path. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <strings.h>
#include <sys/time.h>
#include <unistd.h>

#include <uv.h>

#include "common.h"
#include "router.h"

static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
static struct router *rt;
static int rport;
static uv_loop_t bloop;
static struct wlm_http_server *backend;

static void b_hello(struct wlm_http_req *req, void *ud)
{
    (void)ud;
    wlm_http_respond(req, 200, "text/plain", "X-Backend: 1", "hello\n", 6);
}

static int upfd, upport;

/* One raw upstream connection: HTTP/1.1 keep-alive answering "ok", or,
 * after an Upgrade: websocket request, 101 then an echo until EOF. */
static void *up_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    struct timeval tv = {2, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buf[8192];
    size_t n = 0;
    for (;;) {
        ssize_t k = recv(fd, buf + n, sizeof buf - 1 - n, 0);
        if (k <= 0)
            break;
        n += (size_t)k;
        buf[n] = 0;
        char *end = strstr(buf, "\r\n\r\n");
        if (!end) {
            if (n == sizeof buf - 1)
                break;
            continue;
        }
        if (strcasestr(buf, "upgrade: websocket")) {
            static const char sw[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                     "Connection: Upgrade\r\n\r\n";
            send(fd, sw, sizeof sw - 1, MSG_NOSIGNAL);
            size_t rest = n - (size_t)(end + 4 - buf);
            if (rest)
                send(fd, end + 4, rest, MSG_NOSIGNAL);
            while ((k = recv(fd, buf, sizeof buf, 0)) > 0)
                if (send(fd, buf, (size_t)k, MSG_NOSIGNAL) <= 0)
                    break;
            break;
        }
        static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n";
        send(fd, ok, sizeof ok - 1, MSG_NOSIGNAL);
        n = 0; /* bodies are not expected on this backend: the next head */
    }
    close(fd);
    return NULL;
}

static void *up_main(void *arg)
{
    (void)arg;
    for (;;) {
        int fd = accept(upfd, NULL, NULL);
        if (fd < 0)
            continue;
        pthread_t t;
        if (pthread_create(&t, NULL, up_conn, (void *)(intptr_t)fd) == 0)
            pthread_detach(t);
        else
            close(fd);
    }
    return NULL;
}

static void *backend_main(void *arg)
{
    (void)arg;
    uv_run(&bloop, UV_RUN_DEFAULT);
    return NULL;
}

static void *router_main(void *arg)
{
    router_run(arg);
    return NULL;
}

static void setup(void)
{
    wlm_log_set_level(WLM_LOG_OFF);
    uv_loop_init(&bloop);
    struct wlm_http_server_opts bo = {.host = "127.0.0.1"};
    backend = wlm_http_server_new(&bloop, &bo);
    struct wlm_error err = {0};
    if (!backend || wlm_http_server_route(backend, NULL, "/*", 0, b_hello, NULL) ||
        wlm_http_server_listen(backend, &err))
        abort();
    upfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in ua = {.sin_family = AF_INET};
    ua.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t ul = sizeof ua;
    if (upfd < 0 || bind(upfd, (struct sockaddr *)&ua, sizeof ua) || listen(upfd, 64) ||
        getsockname(upfd, (struct sockaddr *)&ua, &ul))
        abort();
    upport = ntohs(ua.sin_port);
    char cfgtext[1024];
    int n = snprintf(cfgtext, sizeof cfgtext,
                     "{\"limit\":4,\"upstream_timeout_ms\":1000,\"apps\":[{\"name\":\"shop\","
                     "\"hosts\":[\"a\",\"shop\"],"
                     "\"classes\":[{\"name\":\"gold\",\"weight\":4,\"match\":{\"header\":"
                     "\"x-class: gold\"}},{\"name\":\"bronze\"}],\"default_class\":\"bronze\","
                     "\"instances\":[{\"url\":\"http://127.0.0.1:%d\"}]},"
                     "{\"name\":\"ws\",\"hosts\":[\"ws\"],\"max_tunnels\":8,\"tunnel_idle_ms\":500,"
                     "\"instances\":[{\"url\":\"http://127.0.0.1:%d\"}]}]}",
                     wlm_http_server_port(backend), upport);
    struct router_config *cfg = NULL;
    if (router_config_parse(cfgtext, (size_t)n, &cfg, &err))
        abort();
    struct router_opts o = {.listen_host = "127.0.0.1",
                            .listen_port = 0,
                            .admin_port = -1,
                            .workers = 1,
                            .max_header_bytes = 4096,
                            .max_body_bytes = 8192,
                            .header_timeout_ms = 1000,
                            .idle_timeout_ms = 1000};
    if (router_new(&o, cfg, &rt, &err)) {
        fprintf(stderr, "router_new: %s\n", err.msg);
        abort();
    }
    rport = router_listen_port(rt);
    pthread_t t1, t2, t3;
    if (pthread_create(&t1, NULL, backend_main, NULL) || pthread_create(&t2, NULL, router_main, rt) ||
        pthread_create(&t3, NULL, up_main, NULL))
        abort();
    pthread_detach(t1);
    pthread_detach(t2);
    pthread_detach(t3);
}

static void send_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w <= 0)
            return; /* the router may close early on a protocol error */
        c += w;
        n -= (size_t)w;
    }
}

/* A connection to the router. A connect that fails is tried again for up
 * to 20 s: on a loaded machine the router's thread may not accept within
 * the socket's 1 s timeout, and that is not a finding. */
static int connect_router(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)rport)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int tries = 0; tries < 200; tries++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0)
            abort();
        struct timeval tv = {1, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0)
            return fd;
        close(fd);
        usleep(100000);
    }
    fprintf(stderr, "fuzz_h2: cannot connect to the router on port %d for 20 s\n", rport);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!rt)
        setup();
    if (size < 1)
        return 0;
    int fd = connect_router();
    if (!(data[0] & 1))
        send_all(fd, preface, sizeof preface - 1);
    send_all(fd, data + 1, size - 1);
    shutdown(fd, SHUT_WR);
    char buf[16384];
    while (recv(fd, buf, sizeof buf, 0) > 0)
        ;
    close(fd);
    return 0;
}
