/* h2check.c - HTTP/2 request validation (RFC 9113 8.1-8.3).
 *
 * nghttp2's own HTTP messaging checks are turned off (h2_start) because
 * they reset a malformed stream before the router sees it, so a request
 * with two Host fields could not be answered 400 like on HTTP/1.1. The same
 * rules are applied here instead: a malformed head is answered 400 naming
 * what is wrong; a body that does not match its content-length resets the
 * stream (PROTOCOL_ERROR) - it could otherwise run into the next request on
 * the upstream connection. Field names and values are checked with
 * nghttp2's validators, so nothing with NUL, CR or LF reaches an upstream. */
#include <strings.h>

#include "gw.h"

enum {
    HC_METHOD = 1 << 0,
    HC_PATH = 1 << 1,
    HC_SCHEME = 1 << 2,
    HC_AUTHORITY = 1 << 3,
    HC_REGULAR = 1 << 4, /* a regular field was seen: no pseudo-header after it */
    HC_CONNECT = 1 << 5,
    HC_OPTIONS = 1 << 6,
    HC_HTTP = 1 << 7, /* :scheme http or https */
    HC_PATH_SLASH = 1 << 8,
    HC_PATH_STAR = 1 << 9,
};

static int eq(const uint8_t *a, size_t al, const char *b)
{
    size_t bl = strlen(b);
    return al == bl && memcmp(a, b, bl) == 0;
}

static int scheme_ok(const uint8_t *v, size_t n)
{
    if (n == 0 || !((v[0] | 0x20) >= 'a' && (v[0] | 0x20) <= 'z'))
        return 0;
    for (size_t i = 1; i < n; i++) {
        uint8_t c = v[i];
        if (!(((c | 0x20) >= 'a' && (c | 0x20) <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
              c == '-' || c == '.'))
            return 0;
    }
    return 1;
}

/* One field of a request head. Returns NULL, or why the request is malformed. */
const char *h2_check_field(struct h2_check *k, const uint8_t *n, size_t nl, const uint8_t *v,
                           size_t vl)
{
    if (nl == 0 || !nghttp2_check_header_name(n, nl))
        return "invalid header field name";
    if (n[0] == ':') {
        unsigned bit;
        if (k->flags & HC_REGULAR)
            return "pseudo-header field after a regular field";
        if (eq(n, nl, ":method")) {
            if (!nghttp2_check_method(v, vl))
                return "invalid :method";
            bit = HC_METHOD;
            if (eq(v, vl, "CONNECT"))
                k->flags |= HC_CONNECT;
            else if (eq(v, vl, "OPTIONS"))
                k->flags |= HC_OPTIONS;
        } else if (eq(n, nl, ":path")) {
            if (!nghttp2_check_path(v, vl))
                return "invalid :path";
            bit = HC_PATH;
            if (vl && v[0] == '/')
                k->flags |= HC_PATH_SLASH;
            else if (vl == 1 && v[0] == '*')
                k->flags |= HC_PATH_STAR;
        } else if (eq(n, nl, ":scheme")) {
            if (!scheme_ok(v, vl))
                return "invalid :scheme";
            bit = HC_SCHEME;
            if ((vl == 4 && strncasecmp((const char *)v, "http", 4) == 0) ||
                (vl == 5 && strncasecmp((const char *)v, "https", 5) == 0))
                k->flags |= HC_HTTP;
        } else if (eq(n, nl, ":authority")) {
            if (!nghttp2_check_authority(v, vl))
                return "invalid :authority";
            bit = HC_AUTHORITY;
        } else {
            return "unknown pseudo-header field";
        }
        if (k->flags & bit)
            return "repeated pseudo-header field";
        k->flags |= bit;
        return NULL;
    }
    k->flags |= HC_REGULAR;
    if (!nghttp2_check_header_value_rfc9113(v, vl))
        return "invalid header field value";
    if (eq(n, nl, "host")) {
        if (++k->hosts > 1)
            return "more than one Host header";
        if (!nghttp2_check_authority(v, vl))
            return "invalid Host header";
    } else if (eq(n, nl, "content-length")) {
        if (k->clen >= 0)
            return "more than one content-length";
        if (vl == 0 || vl > 18)
            return "invalid content-length";
        long long x = 0;
        for (size_t i = 0; i < vl; i++) {
            if (v[i] < '0' || v[i] > '9')
                return "invalid content-length";
            x = x * 10 + (v[i] - '0');
        }
        k->clen = x;
    } else if (eq(n, nl, "connection") || eq(n, nl, "keep-alive") ||
               eq(n, nl, "proxy-connection") || eq(n, nl, "transfer-encoding") ||
               eq(n, nl, "upgrade")) {
        return "connection-specific header field";
    } else if (eq(n, nl, "te") && !(vl == 8 && strncasecmp((const char *)v, "trailers", 8) == 0)) {
        return "te other than trailers";
    }
    return NULL;
}

/* The whole head is in. Returns NULL, or why the request is malformed. */
const char *h2_check_head(const struct h2_check *k)
{
    unsigned f = k->flags;
    if (!(f & HC_METHOD))
        return "missing :method";
    if (f & HC_CONNECT)
        return "CONNECT is not supported";
    if (!(f & HC_SCHEME) || !(f & HC_PATH))
        return "missing :scheme or :path";
    if (!(f & HC_AUTHORITY) && k->hosts == 0)
        return "missing Host header and :authority";
    if ((f & HC_HTTP) && !(f & HC_PATH_SLASH) && !((f & HC_PATH_STAR) && (f & HC_OPTIONS)))
        return "invalid :path for an http(s) request";
    return NULL;
}
