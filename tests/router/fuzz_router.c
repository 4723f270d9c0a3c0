/* fuzz_router.c - libFuzzer target: HTTP/1 request parsing + classification,
 * configuration parsing, and the upstream response fast path compared with
 * http-parser (first byte bit 2 without bit 0).
 *
 * The first input byte picks the mode (bit 0: config; bit 1: streaming
 * mode, bodies through a sink as the gateway reads them); for requests the
 * second byte is the chunk size, so the incremental reader sees heads split
 * at odd places (as they are on real sockets) and pipelined requests. Upgrade
 * heads (tunnels) end the input like h2c ones. */
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <http_parser.h>

#include "internal.h"
#include "router.h"

static const char cfg_text[] =
    "{\"limit\":4,\"apps\":[{\"name\":\"shop\",\"hosts\":[\"shop.example\",\"a\"],"
    "\"classes\":[{\"name\":\"gold\",\"weight\":4,\"match\":{\"header\":\"X-Class: gold\"}},"
    "{\"name\":\"silver\",\"match\":{\"cookie\":\"tier=silver\"}},"
    "{\"name\":\"api\",\"match\":{\"path\":\"/api/\"}},{\"name\":\"bronze\"}],"
    "\"default_class\":\"bronze\"},{\"name\":\"any\",\"prefix\":\"/x\"}]}";

static void sink(void *ud, const char *d, size_t n)
{
    size_t *total = ud;
    if (n == 0 || !d)
        abort();
    *total += n;
}

/* The upstream fast path (upfast.c) against http-parser: a response the
 * fast path takes must read the same with http-parser - one whole message,
 * same status, Content-Length, keep-alive and the same fields passed on. */
struct diff {
    char hb[8192]; /* "name: value\r\n" lines, as the fast path builds them */
    size_t hlen;
    char name[4096], value[4096];
    size_t nl, vl;
    int in_value, done, overflow;
    long long clen; /* as announced (http-parser counts it down over the body) */
};

static void diff_flush(struct diff *d)
{
    while (d->vl && (d->value[d->vl - 1] == ' ' || d->value[d->vl - 1] == '\t'))
        d->vl--; /* trailing OWS is not part of the value */
    int skip = rt_hop_by_hop(d->name, d->nl);
    if (!skip && d->hlen + d->nl + d->vl + 4 <= sizeof d->hb) {
        memcpy(d->hb + d->hlen, d->name, d->nl);
        memcpy(d->hb + d->hlen + d->nl, ": ", 2);
        memcpy(d->hb + d->hlen + d->nl + 2, d->value, d->vl);
        memcpy(d->hb + d->hlen + d->nl + 2 + d->vl, "\r\n", 2);
        d->hlen += d->nl + d->vl + 4;
    } else if (!skip) {
        d->overflow = 1;
    }
    d->nl = d->vl = 0;
}

static int d_field(http_parser *p, const char *at, size_t len)
{
    struct diff *d = p->data;
    if (d->in_value)
        diff_flush(d);
    d->in_value = 0;
    if (d->nl + len > sizeof d->name)
        return d->overflow = 1, 0;
    memcpy(d->name + d->nl, at, len);
    d->nl += len;
    return 0;
}

static int d_value(http_parser *p, const char *at, size_t len)
{
    struct diff *d = p->data;
    d->in_value = 1;
    if (d->vl + len > sizeof d->value)
        return d->overflow = 1, 0;
    memcpy(d->value + d->vl, at, len);
    d->vl += len;
    return 0;
}

static int d_headers(http_parser *p)
{
    struct diff *d = p->data;
    if (d->nl)
        diff_flush(d);
    d->clen = p->content_length == ULLONG_MAX ? -1 : (long long)p->content_length;
    return 0;
}

static int d_complete(http_parser *p)
{
    ((struct diff *)p->data)->done = 1;
    http_parser_pause(p, 1);
    return 0;
}

static void fast_vs_parser(const char *b, size_t n)
{
    struct rt_fast f;
    char *hb = NULL;
    size_t hl = 0, hc = 0;
    if (rt_fast_response(b, n, &f, &hb, &hl, &hc)) {
        free(hb);
        return; /* left to http-parser: nothing to compare */
    }
    static struct diff d;
    memset(&d, 0, sizeof d);
    http_parser p;
    http_parser_settings s = {.on_header_field = d_field, .on_header_value = d_value,
                              .on_headers_complete = d_headers, .on_message_complete = d_complete};
    http_parser_init(&p, HTTP_RESPONSE);
    p.data = &d;
    size_t k = http_parser_execute(&p, &s, b, n);
    if (!d.done || k != n || (int)p.status_code != f.status ||
        d.clen != f.clen || http_should_keep_alive(&p) != f.keep_alive)
        abort();
    if (!d.overflow && (d.hlen != hl || memcmp(d.hb, hb ? hb : "", hl) != 0))
        abort();
    free(hb);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct router_config *cfg;
    if (!cfg && router_config_parse(cfg_text, sizeof cfg_text - 1, &cfg, NULL))
        abort();
    if (size < 2)
        return 0;
    if ((data[0] & 5) == 4) { /* bit 2 (not a config): an upstream response */
        fast_vs_parser((const char *)data + 1, size - 1);
        return 0;
    }
    if (data[0] & 1) {
        struct router_config *c = NULL;
        struct wlm_error err = {0};
        if (router_config_parse((const char *)data + 1, size - 1, &c, &err) == 0) {
            char b[128];
            for (size_t f = 0; f < c->nflows; f++)
                router_flow_name(c, f, b, sizeof b);
            router_config_free(c);
        }
        return 0;
    }
    size_t chunk = data[1] ? data[1] : 1;
    const char *p = (const char *)data + 2;
    size_t n = size - 2;
    struct router_h1req *r = router_h1req_new(4096, 4096);
    size_t streamed = 0;
    int in_body = 0;
    if (data[0] & 2)
        router_h1req_set_sink(r, sink, &streamed);
    while (n > 0) {
        size_t take = n < chunk ? n : chunk, used = 0;
        enum router_h1_event ev = router_h1req_feed(r, p, take, &used);
        if (ev == ROUTER_H1_ERROR) {
            int st = router_h1req_status(r);
            if (st != 400 && st != 413 && st != 431)
                abort();
            break;
        }
        if (ev == ROUTER_H1_HEAD) {
            struct router_h1view v;
            router_h1req_view(r, &v);
            if (v.body_len != 0 || (!v.chunked && v.content_length <= 0) || in_body)
                abort(); /* a head is reported once, before its body */
            in_body = 1;
            streamed = 0;
        }
        if (ev == ROUTER_H1_REQUEST && in_body) {
            if (!router_h1req_streamed(r) || streamed > 4096)
                abort();
            in_body = 0;
            router_h1req_reset(r);
        } else if (ev == ROUTER_H1_REQUEST) {
            struct router_h1view v;
            router_h1req_view(r, &v);
            const struct router_hdr *h = router_hdr_find(v.headers, v.nheaders, "host");
            struct router_reqinfo ri = {h ? h->value : NULL, h ? h->value_len : 0, v.url,
                                        v.url_len, v.headers, v.nheaders};
            long f = router_classify(cfg, &ri);
            if (f >= (long)cfg->nflows)
                abort();
            if (v.upgrade_h2c || v.upgrade)
                break; /* the rest would be HTTP/2 or a tunnel */
            router_h1req_reset(r);
        }
        if (used == 0 && ev != ROUTER_H1_REQUEST && ev != ROUTER_H1_HEAD)
            used = take; /* parser took nothing: skip ahead */
        p += used;
        n -= used;
    }
    router_h1req_free(r);
    return 0;
}
