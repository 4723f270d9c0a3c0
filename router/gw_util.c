/* gw_util.c - histograms, reason phrases and socket writes shared by the
 * gateway files (byte buffers: buf.c). */
#include <strings.h>

#include "gw.h"

void rt_hist_add(struct rt_hist *h, double ms)
{
    size_t i = 0;
    while (i < RT_NB && ms > rt_hist_ms[i])
        i++;
    h->c[i]++;
    h->sum += ms;
    h->n++;
}

double rt_hist_q(const struct rt_hist *h, double q)
{
    if (!h->n)
        return 0;
    uint64_t want = (uint64_t)(q * (double)h->n + 0.5), acc = 0;
    if (want == 0)
        want = 1;
    for (size_t i = 0; i <= RT_NB; i++) {
        acc += h->c[i];
        if (acc >= want)
            return i < RT_NB ? rt_hist_ms[i] : rt_hist_ms[RT_NB - 1] * 2;
    }
    return 0;
}

const char *rt_reason(int s)
{
    switch (s) {
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Status";
    }
}

/* ------------------------------------------------------------ writes */

struct rt_wreq {
    uv_write_t w;
    size_t len;
    char data[];
};

static void write_done(uv_write_t *w, int status)
{
    uv_stream_t *s = w->handle;
    free(w);
    if (status == 0 && uv_stream_get_write_queue_size(s) < RT_WINDOW / 2)
        rt_stream_drained(s);
}

/* rt_stream_write for several pieces: one writev when the socket takes
 * them all (the usual case), else a copy of what is left is queued. */
int rt_stream_writev(uv_stream_t *s, const uv_buf_t *bufs, unsigned nb)
{
    size_t total = 0;
    for (unsigned i = 0; i < nb; i++)
        total += bufs[i].len;
    if (total == 0)
        return 0;
    int k = uv_try_write(s, bufs, nb);
    if (k == (int)total)
        return 0;
    if (k < 0 && k != UV_EAGAIN)
        return k;
    size_t skip = k < 0 ? 0 : (size_t)k;
    struct rt_wreq *w = malloc(sizeof *w + total - skip);
    if (!w)
        return UV_ENOMEM;
    size_t o = 0;
    for (unsigned i = 0; i < nb; i++) {
        size_t l = bufs[i].len;
        if (skip >= l) {
            skip -= l;
            continue;
        }
        memcpy(w->data + o, bufs[i].base + skip, l - skip);
        o += l - skip;
        skip = 0;
    }
    w->len = o;
    uv_buf_t b = uv_buf_init(w->data, (unsigned)w->len);
    int rc = uv_write(&w->w, s, &b, 1, write_done);
    if (rc)
        free(w);
    return rc;
}

/* Write everything: synchronously when the socket takes it, else queue a
 * copy of the rest. Returns 0 or a libuv error. */
int rt_stream_write(uv_stream_t *s, const char *d, size_t n)
{
    if (n == 0)
        return 0;
    uv_buf_t b = uv_buf_init((char *)d, (unsigned)n);
    int k = uv_try_write(s, &b, 1);
    if (k == (int)n)
        return 0;
    if (k < 0 && k != UV_EAGAIN)
        return k;
    if (k < 0)
        k = 0;
    struct rt_wreq *w = malloc(sizeof *w + n - (size_t)k);
    if (!w)
        return UV_ENOMEM;
    memcpy(w->data, d + k, n - (size_t)k);
    w->len = n - (size_t)k;
    b = uv_buf_init(w->data, (unsigned)w->len);
    int rc = uv_write(&w->w, s, &b, 1, write_done);
    if (rc)
        free(w);
    return rc;
}
