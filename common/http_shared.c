/*
 * http_shared.c - helpers the HTTP server and client share (http_internal.h):
 * header accumulation and arrays, percent-decoding, status reason phrases.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common.h"
#include "http_internal.h"

void wlm__http_hdr_acc_init(struct wlm__http_hdr_acc *a)
{
    wlm_buf_init(&a->field);
    wlm_buf_init(&a->value);
    a->in_value = 0;
}

void wlm__http_hdr_acc_fini(struct wlm__http_hdr_acc *a)
{
    wlm_buf_fini(&a->field);
    wlm_buf_fini(&a->value);
    a->in_value = 0;
}

void wlm__http_hdr_acc_reset(struct wlm__http_hdr_acc *a)
{
    a->field.len = 0;
    a->value.len = 0;
    a->in_value = 0;
}

static int is_pow2_or_zero(size_t n)
{
    return (n & (n - 1)) == 0;
}

int wlm__http_headers_add(struct wlm_http_header **h, size_t *n, const char *name, size_t nlen,
                          const char *value, size_t vlen)
{
    if (is_pow2_or_zero(*n)) {
        size_t cap = *n ? *n * 2 : 8;
        struct wlm_http_header *p = realloc(*h, cap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        *h = p;
    }
    char *nm = strndup(name ? name : "", nlen);
    char *v = strndup(value ? value : "", vlen);
    if (!nm || !v) {
        free(nm);
        free(v);
        return -ENOMEM;
    }
    (*h)[*n].name = nm;
    (*h)[*n].value = v;
    (*n)++;
    return 0;
}

void wlm__http_headers_free(struct wlm_http_header *h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(h[i].name);
        free(h[i].value);
    }
    free(h);
}

const char *wlm__http_headers_find(const struct wlm_http_header *h, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(h[i].name, name) == 0)
            return h[i].value;
    return NULL;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

char *wlm__http_pct_decode(const char *src, size_t len, int plus)
{
    char *out = malloc(len + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char c = src[i];
        if (c == '%') {
            if (i + 2 >= len) {
                free(out);
                return NULL;
            }
            int h = hexval(src[i + 1]), l = hexval(src[i + 2]);
            if (h < 0 || l < 0 || (h == 0 && l == 0)) {
                free(out);
                return NULL;
            }
            out[o++] = (char)(h * 16 + l);
            i += 2;
        } else if (c == '+' && plus) {
            out[o++] = ' ';
        } else {
            out[o++] = c;
        }
    }
    out[o] = '\0';
    return out;
}

const char *wlm_http_reason(int status)
{
    switch (status) {
#define XX(num, name, string)                                                                      \
    case num: return #string;
        HTTP_STATUS_MAP(XX)
#undef XX
    default: return "Unknown";
    }
}
