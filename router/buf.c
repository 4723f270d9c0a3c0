/* buf.c - growable byte buffers (char *b, size_t len, size_t cap), always
 * NUL-terminated: the router builds request and response heads with them.
 * No libuv here, so the fast path and its fuzzer link it alone. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int rt_buf_add(char **b, size_t *len, size_t *cap, const void *d, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t nc = *cap ? *cap : 256;
        while (nc < *len + n + 1)
            nc *= 2;
        char *nb = realloc(*b, nc);
        if (!nb)
            return -1;
        *b = nb;
        *cap = nc;
    }
    memcpy(*b + *len, d, n);
    *len += n;
    (*b)[*len] = 0;
    return 0;
}

/* The hot path avoids printf: these append pieces directly. */
int rt_buf_str(char **b, size_t *len, size_t *cap, const char *s)
{
    return rt_buf_add(b, len, cap, s, strlen(s));
}

int rt_buf_u(char **b, size_t *len, size_t *cap, unsigned long long v)
{
    char t[24];
    int i = 24;
    do
        t[--i] = (char)('0' + v % 10);
    while ((v /= 10));
    return rt_buf_add(b, len, cap, t + i, (size_t)(24 - i));
}

/* "name: value\r\n" onto *b, grown as needed (and NUL-terminated). */
int rt_buf_hdr(char **b, size_t *len, size_t *cap, const char *n, size_t nl, const char *v,
               size_t vl)
{
    size_t need = *len + nl + vl + 5;
    if (need > *cap) {
        size_t nc = *cap ? *cap : 256;
        while (nc < need)
            nc *= 2;
        char *nb = realloc(*b, nc);
        if (!nb)
            return -1;
        *b = nb;
        *cap = nc;
    }
    char *p = *b + *len;
    memcpy(p, n, nl);
    p += nl;
    *p++ = ':';
    *p++ = ' ';
    memcpy(p, v, vl);
    p += vl;
    memcpy(p, "\r\n", 3); /* and a NUL */
    *len += nl + vl + 4;
    return 0;
}

int rt_buf_printf(char **b, size_t *len, size_t *cap, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    if ((size_t)n >= sizeof tmp) {
        char *big = malloc((size_t)n + 1);
        if (!big)
            return -1;
        va_start(ap, fmt);
        vsnprintf(big, (size_t)n + 1, fmt, ap);
        va_end(ap);
        int rc = rt_buf_add(b, len, cap, big, (size_t)n);
        free(big);
        return rc;
    }
    return rt_buf_add(b, len, cap, tmp, (size_t)n);
}
