/*
 * http_internal.h - private helpers shared by http_server.c and http_client.c.
 *
 * Not installed, not part of the public API: names use the wlm__http_ prefix.
 */
#ifndef WLM_HTTP_INTERNAL_H
#define WLM_HTTP_INTERNAL_H

#include <http_parser.h>

#include "common.h"

/* Accumulates one header line from http-parser's field/value callbacks, which
 * may deliver a name or value in several pieces when it spans two reads. */
struct wlm__http_hdr_acc {
    struct wlm_buf field, value;
    int in_value; /* the last piece was a value: the next field starts a new header */
};

void wlm__http_hdr_acc_init(struct wlm__http_hdr_acc *a);
void wlm__http_hdr_acc_fini(struct wlm__http_hdr_acc *a);
void wlm__http_hdr_acc_reset(struct wlm__http_hdr_acc *a);

/* Append one header to a header array whose capacity is implied by its
 * count (grown at powers of two), taking copies of name and value. */
int wlm__http_headers_add(struct wlm_http_header **h, size_t *n, const char *name, size_t nlen,
                          const char *value, size_t vlen);
void wlm__http_headers_free(struct wlm_http_header *h, size_t n);
const char *wlm__http_headers_find(const struct wlm_http_header *h, size_t n, const char *name);

/* Percent-decode src[0..len) into a new NUL-terminated string. `plus` turns
 * '+' into a space (query strings). Returns NULL on a malformed escape, an
 * encoded NUL, or allocation failure. */
char *wlm__http_pct_decode(const char *src, size_t len, int plus);

#endif /* WLM_HTTP_INTERNAL_H */
