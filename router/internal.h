/* internal.h - private helpers of libwlm_router. */
#ifndef WLM_ROUTER_INTERNAL_H
#define WLM_ROUTER_INTERNAL_H

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "router.h"

/* Fill a struct wlm_error without depending on common's .c files (the router
 * only needs the type); returns -code_abs. */
static inline int rt_err(struct wlm_error *err, int code_abs, const char *field, const char *fmt,
                         ...) WLM_PRINTF(4, 5);
static inline int rt_err(struct wlm_error *err, int code_abs, const char *field, const char *fmt,
                         ...)
{
    if (err) {
        va_list ap;
        err->code = -code_abs;
        snprintf(err->field, sizeof err->field, "%s", field ? field : "");
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -code_abs;
}

static inline int rt_ieq(const char *a, size_t alen, const char *b)
{
    size_t blen = strlen(b);
    return alen == blen && strncasecmp(a, b, alen) == 0;
}

char *rt_strndup(const char *s, size_t n);

/* upfast.c: a whole plain HTTP/1.1 response (see there), and the
 * hop-by-hop field names. */
struct rt_fast {
    int status, keep_alive;
    long long clen;
    size_t head_len;
};
/* buf.c: append to a growable buffer; 0, or -1 out of memory. */
int rt_buf_add(char **b, size_t *len, size_t *cap, const void *d, size_t n);
int rt_buf_str(char **b, size_t *len, size_t *cap, const char *s);
int rt_buf_u(char **b, size_t *len, size_t *cap, unsigned long long v);
int rt_buf_hdr(char **b, size_t *len, size_t *cap, const char *n, size_t nl, const char *v,
               size_t vl);
int rt_buf_printf(char **b, size_t *len, size_t *cap, const char *fmt, ...) WLM_PRINTF(4, 5);

int rt_fast_response(const char *b, size_t n, struct rt_fast *f, char **hb, size_t *hlen,
                     size_t *hcap);
int rt_hop_by_hop(const char *n, size_t nl);

#endif
