/* h1req.c - incremental HTTP/1.1 request reader on http-parser.
 *
 * Kept free of sockets so the fuzz target exercises exactly the code the
 * front end runs. Header bytes are stored as offsets into one growable
 * buffer (callbacks may split a header across reads, and the buffer moves
 * when it grows); the view with pointers is built once the head is done.
 * Hygiene lives here: both Content-Length and Transfer-Encoding -> 400,
 * header bytes over the limit -> 431, body over the limit -> 413. */
#include <stdlib.h>
#include <strings.h>

#include <http_parser.h>

#include "internal.h"

struct hoff {
    size_t noff, nlen, voff, vlen;
};

struct router_h1req {
    http_parser p;
    http_parser_settings s;
    size_t max_hdr, max_body;
    char *hb; /* url + header names/values */
    size_t hlen, hcap;
    size_t url_off, url_len;
    struct hoff *hs;
    size_t nh, caph;
    int in_value;
    char *body;
    size_t blen, bcap;
    struct router_hdr *view;
    size_t viewcap;
    int done, status;
    const char *why; /* detail for the error response */
    int keep_alive, upgrade_h2c, h2c_token;
    int seen_cl, seen_te, seen_host;
    int oversize;
    router_h1_sink sink; /* streaming mode: body bytes go here */
    void *sink_ud;
    int streaming;       /* this request's body goes to the sink */
    long long clen;
    int chunked;
    int head_reported;
    unsigned long long streamed;
};

static int grow(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t nc = *cap ? *cap * 2 : 1024;
    while (nc < need)
        nc *= 2;
    char *nb = realloc(*buf, nc);
    if (!nb)
        return -1;
    *buf = nb;
    *cap = nc;
    return 0;
}

static int hb_append(struct router_h1req *r, const char *at, size_t len)
{
    if (r->hlen + len > r->max_hdr) {
        r->oversize = 1;
        return -1;
    }
    if (grow(&r->hb, &r->hcap, r->hlen + len + 1))
        return -1;
    memcpy(r->hb + r->hlen, at, len);
    r->hlen += len;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct router_h1req *r = p->data;
    if (r->url_len == 0)
        r->url_off = r->hlen;
    r->url_len += len;
    return hb_append(r, at, len);
}

static int on_hfield(http_parser *p, const char *at, size_t len)
{
    struct router_h1req *r = p->data;
    if (r->nh == 0 || r->in_value) {
        if (r->nh == r->caph) {
            size_t nc = r->caph ? r->caph * 2 : 16;
            struct hoff *n = realloc(r->hs, nc * sizeof *n);
            if (!n)
                return -1;
            r->hs = n;
            r->caph = nc;
        }
        r->hs[r->nh++] = (struct hoff){.noff = r->hlen};
        r->in_value = 0;
    }
    r->hs[r->nh - 1].nlen += len;
    /* Each header costs a little bookkeeping beyond its bytes. */
    return hb_append(r, at, len);
}

static int on_hvalue(http_parser *p, const char *at, size_t len)
{
    struct router_h1req *r = p->data;
    if (r->nh == 0)
        return -1;
    if (!r->in_value) {
        r->in_value = 1;
        r->hs[r->nh - 1].voff = r->hlen;
    }
    r->hs[r->nh - 1].vlen += len;
    return hb_append(r, at, len);
}

static int has_token(const char *v, size_t vl, const char *tok)
{
    size_t tl = strlen(tok);
    for (size_t i = 0; i + tl <= vl; i++) {
        if (strncasecmp(v + i, tok, tl) != 0)
            continue;
        int left = i == 0 || v[i - 1] == ',' || v[i - 1] == ' ' || v[i - 1] == '\t';
        int right = i + tl == vl || v[i + tl] == ',' || v[i + tl] == ' ' || v[i + tl] == '\t';
        if (left && right)
            return 1;
    }
    return 0;
}

int router_host_valid(const char *v, size_t vl)
{
    /* uri-host [ ":" port ]: reg-name / IPv4 / "[" IPv6 "]" (RFC 3986 3.2.2).
     * Empty is allowed (an authority-less target); anything with spaces,
     * '/', '@', '?', '#' or control bytes is not a host. */
    static const char ok[] = "-._~!$&'()*+,;=:[]%";
    for (size_t i = 0; i < vl; i++) {
        unsigned char ch = (unsigned char)v[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              (ch && strchr(ok, ch))))
            return 0;
    }
    return 1;
}

static int on_headers_complete(http_parser *p)
{
    struct router_h1req *r = p->data;
    int upgrade = 0, settings = 0, host_ok = 1;
    for (size_t i = 0; i < r->nh; i++) {
        const char *n = r->hb + r->hs[i].noff, *v = r->hb + r->hs[i].voff;
        size_t nl = r->hs[i].nlen, vl = r->hs[i].vlen;
        if (rt_ieq(n, nl, "host")) {
            r->seen_host++;
            host_ok &= router_host_valid(v, vl);
        } else if (rt_ieq(n, nl, "content-length"))
            r->seen_cl++;
        else if (rt_ieq(n, nl, "transfer-encoding"))
            r->seen_te++;
        else if (rt_ieq(n, nl, "upgrade") && has_token(v, vl, "h2c"))
            upgrade = r->h2c_token = 1;
        else if (rt_ieq(n, nl, "http2-settings"))
            settings = 1;
    }
    /* Request smuggling guard (RFC 9112 6.1): a message with both framings,
     * or several Content-Length headers, is rejected instead of guessed. */
    if ((r->seen_cl && r->seen_te) || r->seen_cl > 1) {
        r->status = 400;
        r->why = "conflicting Content-Length / Transfer-Encoding";
        return -1;
    }
    /* RFC 9112 3.2: an HTTP/1.1 request without Host, any request with
     * more than one Host line or with an invalid Host value -> 400. */
    if (r->seen_host > 1 || !host_ok ||
        (!r->seen_host && p->http_major == 1 && p->http_minor >= 1)) {
        r->status = 400;
        r->why = r->seen_host > 1 ? "more than one Host header"
                 : host_ok        ? "missing Host header"
                                  : "invalid Host header";
        return -1;
    }
    r->keep_alive = http_should_keep_alive(p);
    r->upgrade_h2c = upgrade && settings && p->http_major == 1 && p->http_minor == 1;
    if (p->content_length != ULLONG_MAX && p->content_length > 0 &&
        p->content_length > r->max_body) {
        r->status = 413;
        return -1;
    }
    r->clen = p->content_length != ULLONG_MAX ? (long long)p->content_length : -1;
    r->chunked = (p->flags & F_CHUNKED) != 0;
    if (r->sink && !r->upgrade_h2c &&
        ((p->flags & F_CHUNKED) || (p->content_length != ULLONG_MAX && p->content_length > 0))) {
        /* Streaming: report the head now (the caller sets up the request),
         * the body follows through the sink. */
        r->streaming = 1;
        http_parser_pause(p, 1);
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct router_h1req *r = p->data;
    if (r->streaming) {
        if (r->streamed + len > r->max_body) {
            r->status = 413;
            return -1;
        }
        r->streamed += len;
        r->sink(r->sink_ud, at, len);
        return 0;
    }
    if (r->blen + len > r->max_body) {
        r->status = 413;
        return -1;
    }
    if (grow(&r->body, &r->bcap, r->blen + len + 1))
        return -1;
    memcpy(r->body + r->blen, at, len);
    r->blen += len;
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct router_h1req *r = p->data;
    r->done = 1;
    http_parser_pause(p, 1); /* one request at a time (pipelining) */
    return 0;
}

struct router_h1req *router_h1req_new(size_t max_header_bytes, size_t max_body_bytes)
{
    struct router_h1req *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->max_hdr = max_header_bytes ? max_header_bytes : 16384;
    r->max_body = max_body_bytes ? max_body_bytes : (8u << 20);
    http_parser_settings_init(&r->s);
    r->s.on_url = on_url;
    r->s.on_header_field = on_hfield;
    r->s.on_header_value = on_hvalue;
    r->s.on_headers_complete = on_headers_complete;
    r->s.on_body = on_body;
    r->s.on_message_complete = on_message_complete;
    router_h1req_reset(r);
    return r;
}

void router_h1req_free(struct router_h1req *r)
{
    if (!r)
        return;
    free(r->hb);
    free(r->hs);
    free(r->body);
    free(r->view);
    free(r);
}

void router_h1req_reset(struct router_h1req *r)
{
    http_parser_init(&r->p, HTTP_REQUEST);
    r->p.data = r;
    r->hlen = r->url_off = r->url_len = 0;
    r->nh = 0;
    r->in_value = 0;
    r->blen = 0;
    r->done = r->status = 0;
    r->why = NULL;
    r->keep_alive = r->upgrade_h2c = r->h2c_token = 0;
    r->seen_cl = r->seen_te = r->seen_host = 0;
    r->oversize = 0;
    r->streaming = r->head_reported = 0;
    r->clen = -1;
    r->chunked = 0;
    r->streamed = 0;
}

void router_h1req_set_sink(struct router_h1req *r, router_h1_sink sink, void *ud)
{
    r->sink = sink;
    r->sink_ud = ud;
}

enum router_h1_event router_h1req_feed(struct router_h1req *r, const char *data, size_t len,
                                       size_t *used)
{
    *used = 0;
    if (r->status)
        return ROUTER_H1_ERROR;
    if (r->done)
        return ROUTER_H1_REQUEST;
    if (r->streaming && r->head_reported && HTTP_PARSER_ERRNO(&r->p) == HPE_PAUSED)
        http_parser_pause(&r->p, 0); /* the caller took the head: read the body */
    size_t n = http_parser_execute(&r->p, &r->s, data, len);
    *used = n;
    enum http_errno e = HTTP_PARSER_ERRNO(&r->p);
    if (r->streaming && !r->head_reported && !r->status) {
        if (e == HPE_PAUSED) {
            r->head_reported = 1;
            return ROUTER_H1_HEAD;
        }
    }
    if (r->done) {
        /* A request with Upgrade stops the parser at the end of the head;
         * the caller decides what the following bytes are. */
        return ROUTER_H1_REQUEST;
    }
    if (e != HPE_OK || (r->p.upgrade && !r->done)) {
        if (!r->status)
            r->status = (r->oversize || e == HPE_HEADER_OVERFLOW) ? 431 : 400;
        return ROUTER_H1_ERROR;
    }
    /* http-parser reads everything it is given; a head that is still
     * incomplete after max_hdr bytes is oversized even if its pieces were. */
    return ROUTER_H1_NEED_MORE;
}

int router_h1req_status(const struct router_h1req *r)
{
    return r->status ? r->status : 400;
}

const char *router_h1req_reason(const struct router_h1req *r)
{
    int st = router_h1req_status(r);
    return r->why ? r->why
           : st == 431 ? "request header fields too large"
           : st == 413 ? "request body too large"
                       : "malformed request";
}

void router_h1req_view(const struct router_h1req *r, struct router_h1view *v)
{
    struct router_h1req *m = (struct router_h1req *)r; /* view cache only */
    if (m->viewcap < r->nh + 1) {
        struct router_hdr *nv = realloc(m->view, (r->nh + 1) * sizeof *nv);
        if (nv) {
            m->view = nv;
            m->viewcap = r->nh + 1;
        }
    }
    size_t nh = m->viewcap >= r->nh ? r->nh : 0;
    for (size_t i = 0; i < nh; i++)
        m->view[i] = (struct router_hdr){r->hb + r->hs[i].noff, r->hs[i].nlen,
                                         r->hb + r->hs[i].voff, r->hs[i].vlen};
    if (m->hb == NULL) /* no URL and no headers: give a valid pointer */
        grow(&m->hb, &m->hcap, 1);
    v->method = http_method_str((enum http_method)r->p.method);
    v->url = r->hb ? r->hb + r->url_off : "";
    v->url_len = r->url_len;
    v->headers = m->view;
    v->nheaders = nh;
    v->body = r->body ? r->body : "";
    v->body_len = r->blen;
    v->http_major = r->p.http_major;
    v->http_minor = r->p.http_minor;
    v->keep_alive = r->keep_alive;
    v->upgrade_h2c = r->upgrade_h2c;
    v->upgrade = r->p.upgrade && !r->upgrade_h2c && !r->h2c_token && r->p.http_major == 1 &&
                 r->p.http_minor == 1;
    v->content_length = r->clen;
    v->chunked = r->chunked;
}

int router_h1req_streamed(const struct router_h1req *r)
{
    return r->streaming;
}
