/* upfast.c - the fast path for the common upstream answer: one whole
 * HTTP/1.1 response in one read, framed by a single Content-Length.
 *
 * http-parser costs about 2k instructions per small response plus a
 * callback per header piece; this reads such a response in one strict pass
 * and builds the client-side header block directly. Anything it does not
 * take whole - another version, 1xx/101/204/304, no or several
 * Content-Length, Transfer-Encoding, a Connection value other than
 * close/keep-alive, obs-fold, a bare LF, a control byte in a value, a
 * body not exactly complete, bytes after it - is left to http-parser from
 * the first byte, so only plain, unambiguous responses are read here. */
#include <stdlib.h>
#include <strings.h>

#include "internal.h"

/* Hop-by-hop (and framing) fields, which each hop sets for itself: they
 * are not passed on in either direction. */
int rt_hop_by_hop(const char *n, size_t nl)
{
    /* Called for every header both ways: pick the candidate by length. */
    const char *h;
    switch (nl) {
    case 2: h = "te"; break;
    case 7: h = (n[0] | 0x20) == 'u' ? "upgrade" : "trailer"; break;
    case 10: h = (n[0] | 0x20) == 'c' ? "connection" : "keep-alive"; break;
    case 14: h = (n[0] | 0x20) == 'c' ? "content-length" : "http2-settings"; break;
    case 16: h = "proxy-connection"; break;
    case 17: h = "transfer-encoding"; break;
    default: return 0;
    }
    return strncasecmp(n, h, nl) == 0;
}

static int tchar(unsigned char c)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && memchr(extra, c, sizeof extra - 1));
}

/* field-content: VCHAR, obs-text, SP, HTAB */
static int vchar(unsigned char c)
{
    return (c >= 0x20 && c != 0x7f) || c == '\t';
}

/* A longer name that starts like one of the fields http-parser interprets
 * (it has been seen to take "Transfer-Encodingxyz" for Transfer-Encoding):
 * left to it, so both readings agree on every response taken here. */
static int special_prefix(const char *n, size_t nl)
{
    static const char *const sp[] = {"connection", "proxy-connection", "content-length",
                                      "transfer-encoding", "upgrade"};
    for (size_t i = 0; i < sizeof sp / sizeof *sp; i++) {
        size_t l = strlen(sp[i]);
        if (nl > l && strncasecmp(n, sp[i], l) == 0)
            return 1;
    }
    return 0;
}

int rt_fast_response(const char *b, size_t n, struct rt_fast *f, char **hb, size_t *hlen,
                     size_t *hcap)
{
    const char *p = b, *end = b + n;
    if (n < 17 || memcmp(p, "HTTP/1.1 ", 9) != 0)
        return -1;
    for (int i = 9; i < 12; i++)
        if (p[i] < '0' || p[i] > '9')
            return -1;
    int status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    if (status < 200 || status > 599 || status == 204 || status == 304 || p[12] != ' ')
        return -1;
    p += 13;
    while (p < end && *p != '\r') /* reason phrase */
        if (!vchar((unsigned char)*p++))
            return -1;
    if (end - p < 2 || p[1] != '\n')
        return -1;
    p += 2;
    long long clen = -1;
    int ka = 1;
    for (;;) {
        if (end - p < 2)
            return -1;
        if (p[0] == '\r') {
            if (p[1] != '\n')
                return -1;
            p += 2;
            break;
        }
        const char *name = p;
        while (p < end && tchar((unsigned char)*p))
            p++;
        if (p == name || p >= end || *p != ':') /* also obs-fold: a line starting with SP */
            return -1;
        size_t nl = (size_t)(p - name);
        p++;
        int tab = 0; /* whitespace other than SP around the value */
        while (p < end && (*p == ' ' || *p == '\t'))
            tab |= *p++ == '\t';
        const char *val = p;
        while (p < end && *p != '\r')
            if (!vchar((unsigned char)*p++))
                return -1;
        if (end - p < 2 || p[1] != '\n')
            return -1;
        const char *vend = p;
        while (vend > val && (vend[-1] == ' ' || vend[-1] == '\t'))
            vend--;
        size_t vl = (size_t)(vend - val);
        int trailing = vend != p; /* http-parser refuses some of these in framing fields */
        p += 2;
        if ((tab || trailing) && ((nl == 14 && strncasecmp(name, "content-length", 14) == 0) ||
                                  (nl == 10 && strncasecmp(name, "connection", 10) == 0)))
            return -1;
        if (special_prefix(name, nl))
            return -1;
        if (nl == 14 && strncasecmp(name, "content-length", 14) == 0) {
            if (clen >= 0 || vl == 0 || vl > 18)
                return -1;
            clen = 0;
            for (size_t i = 0; i < vl; i++) {
                if (val[i] < '0' || val[i] > '9')
                    return -1;
                clen = clen * 10 + (val[i] - '0');
            }
            continue;
        }
        if (nl == 17 && strncasecmp(name, "transfer-encoding", 17) == 0)
            return -1;
        if (nl == 10 && strncasecmp(name, "connection", 10) == 0) {
            if (vl == 5 && strncasecmp(val, "close", 5) == 0)
                ka = 0;
            else if (!(vl == 10 && strncasecmp(val, "keep-alive", 10) == 0))
                return -1;
            continue;
        }
        if (rt_hop_by_hop(name, nl))
            continue;
        if (rt_buf_hdr(hb, hlen, hcap, name, nl, val, vl))
            return -1;
    }
    if (clen < 0 || (unsigned long long)(end - p) != (unsigned long long)clen)
        return -1;
    f->status = status;
    f->keep_alive = ka;
    f->clen = clen;
    f->head_len = (size_t)(p - b);
    return 0;
}
