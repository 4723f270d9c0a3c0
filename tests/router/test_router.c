/* test_router.c - unit tests of the router's pure parts: configuration,
 * classification, the SFQ scheduler and the HTTP/1 request reader. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gw.h" /* h2check.c's validator */
#include "router.h"

static const char *cfg_text =
    "{\"limit\":4,\"apps\":["
    "{\"name\":\"shop\",\"hosts\":[\"shop.example\"],\"prefix\":\"/\","
    " \"classes\":[{\"name\":\"gold\",\"weight\":4,\"cost\":2,\"match\":{\"header\":\"X-Class: gold\"}},"
    "              {\"name\":\"silver\",\"weight\":2,\"match\":{\"cookie\":\"tier=silver\"}},"
    "              {\"name\":\"api\",\"match\":{\"path\":\"/api/\"}},"
    "              {\"name\":\"bronze\"}],"
    " \"default_class\":\"bronze\","
    " \"instances\":[{\"id\":\"i1\",\"url\":\"http://127.0.0.1:8001\",\"cpu_mhz\":2000}]},"
    "{\"name\":\"admin\",\"prefix\":\"/admin-ui\"}]}";

static struct router_config *load(void)
{
    struct router_config *cfg = NULL;
    struct wlm_error err = {0};
    assert_int_equal(router_config_parse(cfg_text, strlen(cfg_text), &cfg, &err), 0);
    return cfg;
}

static void test_config_ok(void **st)
{
    struct router_config *cfg = load();
    assert_int_equal(cfg->limit, 4);
    assert_int_equal(cfg->napps, 2);
    assert_int_equal(cfg->nflows, 5);
    assert_int_equal(cfg->apps[0].instances[0].port, 8001);
    assert_string_equal(cfg->apps[0].instances[0].host, "127.0.0.1");
    char b[64];
    assert_string_equal(router_flow_name(cfg, 1, b, sizeof b), "shop/silver");
    assert_int_equal(router_config_find_flow(cfg, "admin/default"), 4);
    router_config_free(cfg);
}

static void expect_bad(const char *text, const char *field)
{
    struct router_config *cfg = NULL;
    struct wlm_error err = {0};
    assert_true(router_config_parse(text, strlen(text), &cfg, &err) < 0);
    assert_null(cfg);
    assert_string_equal(err.field, field);
}

static void test_config_bad(void **st)
{
    expect_bad("{\"limit\":0}", "limit");
    expect_bad("{\"limitx\":1}", "limitx");
    expect_bad("{\"apps\":[{\"name\":\"a\",\"classes\":[{\"name\":\"c\",\"weight\":-1}]}]}",
               "apps[0].classes[0].weight");
    expect_bad("{\"apps\":[{\"name\":\"a\",\"instances\":[{\"url\":\"ftp://x\"}]}]}",
               "apps[0].instances[0].url");
    expect_bad("{\"apps\":[{\"name\":\"a\",\"default_class\":\"zz\"}]}", "apps[0].default_class");
    expect_bad("{\"apps\":[{\"name\":\"a\",\"classes\":[{\"name\":\"c\",\"match\":{\"header\":\"nocolon\"}}]}]}",
               "apps[0].classes[0].match.header");
    expect_bad("{\"apps\":[{\"name\":\"a\"},{\"name\":\"a\"}]}", "apps[1].name");
    expect_bad("[1]", "");
    expect_bad("{", "");
}

static long classify(struct router_config *cfg, const char *host, const char *path,
                     const char *hn, const char *hv)
{
    struct router_hdr h = {hn, hn ? strlen(hn) : 0, hv, hv ? strlen(hv) : 0};
    struct router_reqinfo ri = {host, host ? strlen(host) : 0, path, strlen(path), &h, hn ? 1 : 0};
    return router_classify(cfg, &ri);
}

static void test_classify(void **st)
{
    struct router_config *cfg = load();
    assert_int_equal(classify(cfg, "shop.example", "/x", "x-class", "gold"), 0);
    assert_int_equal(classify(cfg, "SHOP.example:8080", "/x", "X-Class", "gold"), 0);
    assert_int_equal(classify(cfg, "shop.example", "/x", "Cookie", "a=b; tier=silver"), 1);
    assert_int_equal(classify(cfg, "shop.example", "/x", "Cookie", "tier=silverx"), 3);
    assert_int_equal(classify(cfg, "shop.example", "/api/v1?q=1", NULL, NULL), 2);
    assert_int_equal(classify(cfg, "shop.example", "/", "X-Class", "silver"), 3);
    /* Host matches no app with hosts, but "admin" has none (any host) and its prefix. */
    assert_int_equal(classify(cfg, "other", "/admin-ui/x", NULL, NULL), 4);
    assert_true(classify(cfg, "other", "/x", NULL, NULL) < 0);
    assert_true(classify(cfg, NULL, "/x", NULL, NULL) < 0);
    router_config_free(cfg);
}

/* Saturated flows with weights 1:2:4 and costs 1:1:2: the service each gets
 * (sum of costs dispatched) is proportional to its weight. */
static void test_sched_weights(void **st)
{
    struct router_sched *s = router_sched_new(3);
    double w[3] = {1, 2, 4}, c[3] = {1, 1, 2};
    for (size_t f = 0; f < 3; f++)
        router_sched_set_flow(s, f, w[f], c[f], 100000);
    static struct router_sched_item items[3][3000];
    for (size_t i = 0; i < 3000; i++)
        for (size_t f = 0; f < 3; f++)
            assert_int_equal(router_sched_enqueue(s, &items[f][i], f, 0), 0);
    double served[3] = {0};
    for (int k = 0; k < 3500; k++) {
        struct router_sched_item *it = router_sched_pick(s, NULL, NULL);
        assert_non_null(it);
        served[it->flow] += c[it->flow];
    }
    double tot = served[0] + served[1] + served[2];
    for (size_t f = 0; f < 3; f++)
        assert_true(served[f] / tot > w[f] / 7 - 0.01 && served[f] / tot < w[f] / 7 + 0.01);
    double norm[3];
    for (size_t f = 0; f < 3; f++)
        norm[f] = served[f] / w[f];
    assert_true(router_jain_index(norm, 3) > 0.999);
    router_sched_free(s);
}

static void test_sched_bounds_expiry_remove(void **st)
{
    struct router_sched *s = router_sched_new(2);
    router_sched_set_flow(s, 0, 1, 1, 2);
    struct router_sched_item a = {0}, b = {0}, c = {0}, d = {0};
    assert_int_equal(router_sched_enqueue(s, &a, 0, 0.0), 0);
    assert_int_equal(router_sched_enqueue(s, &b, 0, 1.0), 0);
    assert_int_equal(router_sched_enqueue(s, &c, 0, 1.0), -WLM_ELIMIT);
    assert_int_equal(router_sched_enqueue(s, &d, 1, 1.0), 0);
    router_sched_remove(s, &d);
    assert_false(d.queued);
    assert_int_equal(s->flows[0].len, 2);
    assert_int_equal(s->flows[1].len, 0);
    router_sched_free(s);
}

static double wait_half(size_t f, void *ud)
{
    return 0.5;
}

static void test_sched_expiry(void **st)
{
    struct router_sched *s = router_sched_new(1);
    struct router_sched_item a = {0}, b = {0};
    router_sched_enqueue(s, &a, 0, 0.0);
    router_sched_enqueue(s, &b, 0, 1.0);
    assert_ptr_equal(router_sched_expired(s, 1.2, wait_half, NULL), &a);
    assert_null(router_sched_expired(s, 1.2, wait_half, NULL));
    assert_ptr_equal(router_sched_pick(s, NULL, NULL), &b);
    assert_null(router_sched_pick(s, NULL, NULL));
    router_sched_free(s);
}

static int only_flow1(size_t f, void *ud)
{
    return f == 1;
}

static void reject_count(struct router_sched_item *it, void *ud)
{
    (*(int *)ud)++;
}

static void test_sched_eligible_migrate(void **st)
{
    struct router_sched *s = router_sched_new(2), *t = router_sched_new(1);
    struct router_sched_item a = {0}, b = {0}, c = {0};
    router_sched_enqueue(s, &a, 0, 0);
    router_sched_enqueue(s, &b, 1, 0);
    router_sched_enqueue(s, &c, 1, 0);
    assert_ptr_equal(router_sched_pick(s, only_flow1, NULL), &b);
    long map[2] = {-1, 0};
    int rejected = 0;
    router_sched_migrate(s, t, map, reject_count, &rejected);
    assert_int_equal(rejected, 1);
    assert_int_equal(s->total, 0);
    assert_ptr_equal(router_sched_pick(t, NULL, NULL), &c);
    router_sched_free(s);
    router_sched_free(t);
}

static enum router_h1_event feed_all(struct router_h1req *r, const char *s, size_t *used)
{
    return router_h1req_feed(r, s, strlen(s), used);
}

static void test_h1(void **st)
{
    struct router_h1req *r = router_h1req_new(256, 16);
    size_t used;
    const char *two = "GET /a HTTP/1.1\r\nHost: x\r\nX-Class: gold\r\n\r\n"
                      "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc";
    assert_int_equal(feed_all(r, two, &used), ROUTER_H1_REQUEST);
    struct router_h1view v;
    router_h1req_view(r, &v);
    assert_string_equal(v.method, "GET");
    assert_int_equal(v.nheaders, 2);
    assert_non_null(router_hdr_find(v.headers, v.nheaders, "x-class"));
    assert_true(v.keep_alive);
    router_h1req_reset(r);
    assert_int_equal(router_h1req_feed(r, two + used, strlen(two) - used, &used),
                     ROUTER_H1_REQUEST);
    router_h1req_view(r, &v);
    assert_string_equal(v.method, "POST");
    assert_int_equal(v.body_len, 3);
    router_h1req_reset(r);
    /* chunked */
    assert_int_equal(feed_all(r, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                                 "3\r\nabc\r\n0\r\n\r\n", &used), ROUTER_H1_REQUEST);
    router_h1req_view(r, &v);
    assert_int_equal(v.body_len, 3);
    router_h1req_reset(r);
    /* CL + TE conflict */
    assert_int_equal(feed_all(r, "POST / HTTP/1.1\r\nContent-Length: 3\r\n"
                                 "Transfer-Encoding: chunked\r\n\r\n", &used), ROUTER_H1_ERROR);
    assert_int_equal(router_h1req_status(r), 400);
    router_h1req_reset(r);
    /* oversized head */
    char big[600];
    snprintf(big, sizeof big, "GET / HTTP/1.1\r\nX-Big: %0500d\r\n\r\n", 1);
    assert_int_equal(feed_all(r, big, &used), ROUTER_H1_ERROR);
    assert_int_equal(router_h1req_status(r), 431);
    router_h1req_reset(r);
    /* body too large */
    assert_int_equal(feed_all(r, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99\r\n\r\n", &used),
                     ROUTER_H1_ERROR);
    assert_int_equal(router_h1req_status(r), 413);
    router_h1req_reset(r);
    /* Host (RFC 9112 3.2): required on HTTP/1.1, at most one, a valid uri-host */
    static const char *const bad_host[] = {
        "GET / HTTP/1.1\r\nX-A: b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nHOST: b\r\n\r\n",
        "GET http://a/ HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: user@a\r\n\r\n",
        "GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof bad_host / sizeof *bad_host; i++) {
        assert_int_equal(feed_all(r, bad_host[i], &used), ROUTER_H1_ERROR);
        assert_int_equal(router_h1req_status(r), 400);
        router_h1req_reset(r);
    }
    static const char *const good_host[] = {
        "GET / HTTP/1.0\r\n\r\n", /* HTTP/1.0 may omit Host */
        "GET / HTTP/1.1\r\nHost: shop.example:8080\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: \r\n\r\n",
    };
    for (size_t i = 0; i < sizeof good_host / sizeof *good_host; i++) {
        assert_int_equal(feed_all(r, good_host[i], &used), ROUTER_H1_REQUEST);
        router_h1req_reset(r);
    }
    /* garbage */
    assert_int_equal(feed_all(r, "\x01\x02 nonsense\r\n\r\n", &used), ROUTER_H1_ERROR);
    router_h1req_reset(r);
    /* h2c upgrade flag */
    assert_int_equal(feed_all(r, "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                                 "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n",
                              &used), ROUTER_H1_REQUEST);
    router_h1req_view(r, &v);
    assert_true(v.upgrade_h2c);
    router_h1req_free(r);
}

struct sinkbuf {
    char b[256];
    size_t n;
    int calls;
};

static void sink(void *ud, const char *d, size_t n)
{
    struct sinkbuf *sb = ud;
    assert_true(sb->n + n < sizeof sb->b);
    memcpy(sb->b + sb->n, d, n);
    sb->n += n;
    sb->calls++;
}

/* Streaming mode: the head is reported before the body, the body goes to
 * the sink in pieces (chunk framing removed) whatever the read boundaries,
 * pipelined requests follow, bodies past the limit get 413. */
static void test_h1_stream(void **st)
{
    struct router_h1req *r = router_h1req_new(256, 20);
    struct sinkbuf sb = {0};
    router_h1req_set_sink(r, sink, &sb);
    const char *in = "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789"
                     "POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
                     "GET /c HTTP/1.1\r\nHost: x\r\n\r\n";
    size_t len = strlen(in);
    for (size_t step = 1; step <= len; step = step * 3 + 1) {
        router_h1req_reset(r);
        sb.n = 0;
        size_t off = 0;
        int heads = 0, reqs = 0;
        struct router_h1view v;
        char got[8][16];
        while (off < len) {
            size_t take = len - off < step ? len - off : step, used = 0;
            enum router_h1_event ev = router_h1req_feed(r, in + off, take, &used);
            off += used;
            assert_int_not_equal(ev, ROUTER_H1_ERROR);
            if (ev == ROUTER_H1_HEAD) {
                router_h1req_view(r, &v);
                assert_int_equal(v.body_len, 0);
                snprintf(got[heads++], 16, "%.*s", (int)v.url_len, v.url);
                if (heads == 1)
                    assert_int_equal(v.content_length, 10);
                else
                    assert_true(v.chunked);
            } else if (ev == ROUTER_H1_REQUEST) {
                router_h1req_view(r, &v);
                if (!router_h1req_streamed(r))
                    snprintf(got[4 + reqs], 16, "%.*s", (int)v.url_len, v.url);
                reqs++;
                router_h1req_reset(r);
            }
        }
        assert_int_equal(heads, 2);
        assert_int_equal(reqs, 3);
        assert_string_equal(got[0], "/a");
        assert_string_equal(got[1], "/b");
        assert_string_equal(got[6], "/c");
        assert_int_equal(sb.n, 17);
        assert_memory_equal(sb.b, "0123456789abcdefg", 17);
    }
    /* chunked past max_body (20) -> 413 after the head was reported */
    router_h1req_reset(r);
    size_t used;
    const char *big = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "10\r\n0123456789abcdef\r\n10\r\n0123456789abcdef\r\n";
    assert_int_equal(router_h1req_feed(r, big, strlen(big), &used), ROUTER_H1_HEAD);
    assert_int_equal(router_h1req_feed(r, big + used, strlen(big) - used, &used),
                     ROUTER_H1_ERROR);
    assert_int_equal(router_h1req_status(r), 413);
    router_h1req_free(r);
}

/* The gateway as a library: two routers in one process, each answers its
 * admin /healthz and 404s an unknown host on its data port, then stops and
 * frees cleanly (LeakSanitizer checks the teardown). */

static void *run_router(void *arg)
{
    router_run(arg);
    return NULL;
}

static int http_status(int port, const char *req)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a)) {
        close(fd);
        return -1;
    }
    if (write(fd, req, strlen(req)) < 0) {
        close(fd);
        return -1;
    }
    char buf[512] = {0};
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    int st = -1;
    if (n > 12)
        sscanf(buf, "HTTP/1.1 %d", &st);
    return st;
}

static void test_gateway_lifecycle(void **st)
{
    struct router *r[2];
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        struct router_config *cfg = load();
        struct router_opts o = {.listen_host = "127.0.0.1", .listen_port = 0,
                                .admin_host = "127.0.0.1", .admin_port = 0, .workers = 2};
        struct wlm_error err = {0};
        assert_int_equal(router_new(&o, cfg, &r[i], &err), 0);
        assert_true(router_listen_port(r[i]) > 0 && router_admin_port(r[i]) > 0);
        pthread_create(&th[i], NULL, run_router, r[i]);
    }
    for (int i = 0; i < 2; i++) {
        assert_int_equal(http_status(router_admin_port(r[i]),
                                     "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"), 200);
        assert_int_equal(http_status(router_listen_port(r[i]),
                                     "GET / HTTP/1.1\r\nHost: nowhere\r\n\r\n"), 404);
        char *stats = router_stats_json(r[i]);
        assert_non_null(strstr(stats, "\"flow\":\"shop/gold\""));
        free(stats);
    }
    for (int i = 0; i < 2; i++) {
        router_stop(r[i]);
        pthread_join(th[i], NULL);
        router_free(r[i]);
    }
    /* Bad options are reported, and the caller keeps its config. */
    struct router_config *cfg = load();
    struct router_opts o = {.listen_host = "256.0.0.1", .admin_port = -1};
    struct wlm_error err = {0};
    struct router *bad = NULL;
    assert_true(router_new(&o, cfg, &bad, &err) < 0);
    assert_null(bad);
    assert_true(strlen(err.msg) > 0);
    router_config_free(cfg);
}

/* One h2 request head through h2check.c: fields "name=value" (the first
 * '=' splits), NULL-terminated; returns NULL (valid) or the reason. */
static const char *h2_head(const char *const *fields)
{
    struct h2_check k = {0, 0, -1};
    for (size_t i = 0; fields[i]; i++) {
        const char *eq = strchr(fields[i] + 1, '=');
        size_t nl = (size_t)(eq - fields[i]);
        const char *why = h2_check_field(&k, (const uint8_t *)fields[i], nl,
                                         (const uint8_t *)eq + 1, strlen(eq + 1));
        if (why)
            return why;
    }
    return h2_check_head(&k);
}

#define H2(...) h2_head((const char *const[]){__VA_ARGS__, NULL})
#define REQ ":method=GET", ":scheme=https", ":path=/x"

static void test_h2_check(void **st)
{
    (void)st;
    /* valid heads */
    assert_null(H2(REQ, ":authority=shop"));
    assert_null(H2(REQ, "host=shop:8443"));
    assert_null(H2(REQ, ":authority=shop", "host=shop", "te=trailers", "content-length=12"));
    assert_null(H2(":method=OPTIONS", ":scheme=http", ":path=*", ":authority=a"));
    assert_null(H2(":method=GET", ":scheme=foo", ":path=opaque", ":authority=a"));
    /* Host: two, none (with no :authority), invalid */
    assert_string_equal(H2(REQ, "host=a", "host=a"), "more than one Host header");
    assert_string_equal(H2(REQ, ":authority=a", "host=a", "host=b"), "more than one Host header");
    assert_string_equal(H2(REQ), "missing Host header and :authority");
    assert_string_equal(H2(REQ, "host=a b"), "invalid Host header");
    /* pseudo-headers */
    assert_string_equal(H2(":method=GET", ":method=GET", ":scheme=http", ":path=/"),
                        "repeated pseudo-header field");
    assert_string_equal(H2(REQ, "x-a=1", ":authority=a"), "pseudo-header field after a regular field");
    assert_string_equal(H2(REQ, ":status=200"), "unknown pseudo-header field");
    assert_string_equal(H2(":scheme=http", ":path=/", ":authority=a"), "missing :method");
    assert_string_equal(H2(":method=GET", ":scheme=http", ":authority=a"), "missing :scheme or :path");
    assert_string_equal(H2(":method=CONNECT", ":authority=a:443"), "CONNECT is not supported");
    assert_string_equal(H2(":method=GET", ":scheme=http", ":path=*", ":authority=a"),
                        "invalid :path for an http(s) request");
    assert_string_equal(H2(":method=GET", ":scheme=http", ":path=x", ":authority=a"),
                        "invalid :path for an http(s) request");
    assert_string_equal(H2(":method=G T", ":scheme=http", ":path=/", ":authority=a"), "invalid :method");
    assert_string_equal(H2(":method=GET", ":scheme=1http", ":path=/", ":authority=a"), "invalid :scheme");
    /* fields */
    assert_string_equal(H2(REQ, ":authority=a", "X-Up=1"), "invalid header field name");
    assert_string_equal(H2(REQ, ":authority=a", "x-a=1\r\nx-b: 2"), "invalid header field value");
    assert_string_equal(H2(REQ, ":authority=a", "x-a= padded"), "invalid header field value");
    assert_string_equal(H2(REQ, ":authority=a", "connection=close"), "connection-specific header field");
    assert_string_equal(H2(REQ, ":authority=a", "transfer-encoding=chunked"),
                        "connection-specific header field");
    assert_string_equal(H2(REQ, ":authority=a", "te=gzip"), "te other than trailers");
    assert_string_equal(H2(REQ, ":authority=a", "content-length=1", "content-length=1"),
                        "more than one content-length");
    assert_string_equal(H2(REQ, ":authority=a", "content-length=-1"), "invalid content-length");
    assert_string_equal(H2(REQ, ":authority=a", "content-length=12a"), "invalid content-length");
    /* the length is kept for the DATA check */
    struct h2_check k = {0, 0, -1};
    assert_null(h2_check_field(&k, (const uint8_t *)"content-length", 14, (const uint8_t *)"4096", 4));
    assert_int_equal(k.clen, 4096);
}

/* The upstream fast path (upfast.c): what it takes whole, what it leaves to
 * http-parser (-1). */
static int fast(const char *r, struct rt_fast *f, char *hdrs, size_t cap)
{
    char *hb = NULL;
    size_t hl = 0, hc = 0;
    int rc = rt_fast_response(r, strlen(r), f, &hb, &hl, &hc);
    snprintf(hdrs, cap, "%.*s", (int)hl, hb ? hb : "");
    free(hb);
    return rc;
}

static void test_upstream_fast(void **st)
{
    (void)st;
    struct rt_fast f;
    char h[512];
    assert_int_equal(fast("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
                          "X-A:  v1 \r\nKeep-Alive: timeout=5\r\nConnection: keep-alive\r\n\r\nhello",
                          &f, h, sizeof h), 0);
    assert_int_equal(f.status, 200);
    assert_int_equal(f.keep_alive, 1);
    assert_int_equal(f.clen, 5);
    assert_int_equal(f.head_len, strlen("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
                                        "X-A:  v1 \r\nKeep-Alive: timeout=5\r\nConnection: keep-alive\r\n\r\n"));
    /* hop-by-hop and framing fields dropped, values trimmed */
    assert_string_equal(h, "Content-Type: text/plain\r\nX-A: v1\r\n");
    assert_int_equal(fast("HTTP/1.1 503 Busy\r\nconnection: Close\r\ncontent-length: 0\r\n\r\n", &f, h,
                          sizeof h), 0);
    assert_int_equal(f.status, 503);
    assert_int_equal(f.keep_alive, 0);
    assert_int_equal(f.clen, 0);
    /* left to http-parser */
    const char *other[] = {
        "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx",             /* version */
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 101 Switching\r\nUpgrade: websocket\r\n\r\n",
        "HTTP/1.1 204 No Content\r\n\r\n",
        "HTTP/1.1 304 Not Modified\r\nContent-Length: 3\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\nx",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
        "HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\nx",
        "HTTP/1.1 200 OK\r\n\r\nbody until close",                      /* no length */
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel",            /* body not all here */
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxHTTP/1.1 200",  /* bytes after it */
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nX-A: a\r\n b\r\n\r\nx", /* obs-fold */
        "HTTP/1.1 200 OK\nContent-Length: 1\n\nx",                     /* bare LF */
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nX-A: a\x01b\r\n\r\nx",  /* control byte */
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nX A: a\r\n\r\nx",    /* bad name */
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: upgrade\r\n\r\nx",
        "HTTP/1.1 2x0 OK\r\nContent-Length: 1\r\n\r\nx",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n",                      /* head not all here */
    };
    for (size_t i = 0; i < sizeof other / sizeof *other; i++) {
        if (fast(other[i], &f, h, sizeof h) != -1)
            fail_msg("taken by the fast path: %s", other[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_ok),
        cmocka_unit_test(test_config_bad),
        cmocka_unit_test(test_classify),
        cmocka_unit_test(test_sched_weights),
        cmocka_unit_test(test_sched_bounds_expiry_remove),
        cmocka_unit_test(test_sched_expiry),
        cmocka_unit_test(test_sched_eligible_migrate),
        cmocka_unit_test(test_h1),
        cmocka_unit_test(test_h1_stream),
        cmocka_unit_test(test_h2_check),
        cmocka_unit_test(test_upstream_fast),
        cmocka_unit_test(test_gateway_lifecycle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
