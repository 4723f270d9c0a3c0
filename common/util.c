/* util.c - strings, growable buffers, secrets and clocks. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"

char *wlm_strdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

char *wlm_asprintf(const char *fmt, ...)
{
    va_list ap;
    char *out = NULL;
    va_start(ap, fmt);
    if (vasprintf(&out, fmt, ap) < 0)
        out = NULL;
    va_end(ap);
    return out;
}

size_t wlm_strlcpy(char *dst, const char *src, size_t size)
{
    size_t n = strlen(src);
    if (size) {
        size_t c = n < size - 1 ? n : size - 1;
        memcpy(dst, src, c);
        dst[c] = '\0';
    }
    return n;
}

int wlm_secret_equal(const char *a, const char *b)
{
    /* Walk the whole secret `b` whatever `a` holds, so timing reveals only
     * the secret's length, which is not sensitive. */
    size_t la = strlen(a), lb = strlen(b);
    unsigned char diff = (unsigned char)(la != lb);
    for (size_t i = 0; i < lb; i++) {
        unsigned char ca = i < la ? (unsigned char)a[i] : 0;
        diff |= (unsigned char)(ca ^ (unsigned char)b[i]);
    }
    return diff == 0;
}

void wlm_buf_init(struct wlm_buf *b)
{
    b->data = NULL;
    b->len = b->cap = 0;
}

void wlm_buf_fini(struct wlm_buf *b)
{
    free(b->data);
    wlm_buf_init(b);
}

static int buf_reserve(struct wlm_buf *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p)
        return -ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int wlm_buf_append(struct wlm_buf *b, const void *data, size_t len)
{
    if (buf_reserve(b, len))
        return -ENOMEM;
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

int wlm_buf_read_file(struct wlm_buf *b, FILE *f)
{
    char chunk[65536];
    size_t n;
    errno = 0;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        if (wlm_buf_append(b, chunk, n))
            return -ENOMEM;
    return ferror(f) ? -(errno ? errno : EIO) : 0;
}

int wlm_buf_vprintf(struct wlm_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return -WLM_EINVAL;
    if (buf_reserve(b, (size_t)n))
        return -ENOMEM;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int wlm_buf_printf(struct wlm_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = wlm_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

char *wlm_buf_steal(struct wlm_buf *b)
{
    char *p = b->data ? b->data : strdup("");
    wlm_buf_init(b);
    return p;
}

double wlm_now_wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double wlm_now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

char *wlm_time_format(double t, char *buf, size_t size)
{
    time_t secs = (time_t)t;
    int ms = (int)((t - (double)secs) * 1000.0);
    if (ms < 0)
        ms = 0;
    if (ms > 999)
        ms = 999;
    struct tm tm;
    gmtime_r(&secs, &tm);
    char tmp[32];
    strftime(tmp, sizeof(tmp), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, size, "%s.%03dZ", tmp, ms);
    return buf;
}
