/* error.c - human-readable errors carried back to callers. */
#include <errno.h>
#include <string.h>

#include "common.h"

static int error_vset(struct wlm_error *err, int code_abs, const char *field, const char *fmt,
                      va_list ap)
{
    if (err) {
        err->code = -code_abs;
        wlm_strlcpy(err->field, field ? field : "", sizeof(err->field));
        vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    }
    return -code_abs;
}

int wlm_error_set(struct wlm_error *err, int code_abs, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = error_vset(err, code_abs, NULL, fmt, ap);
    va_end(ap);
    return rc;
}

int wlm_error_setf(struct wlm_error *err, int code_abs, const char *field, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = error_vset(err, code_abs, field, fmt, ap);
    va_end(ap);
    return rc;
}

void wlm_error_clear(struct wlm_error *err)
{
    if (err) {
        err->code = 0;
        err->field[0] = '\0';
        err->msg[0] = '\0';
    }
}

const char *wlm_error_name(int code)
{
    switch (code < 0 ? -code : code) {
    case 0: return "ok";
    case WLM_EINVAL: return "invalid";
    case WLM_ENOTFOUND: return "not_found";
    case WLM_ECONFLICT: return "conflict";
    case WLM_EIO: return "io_error";
    case WLM_EUNSUPPORTED: return "unsupported";
    case WLM_EAUTH: return "unauthorized";
    case WLM_ETIMEOUT: return "timeout";
    case WLM_ELIMIT: return "limit_exceeded";
    case WLM_EINTERNAL: return "internal";
    case WLM_EUNAVAIL: return "unavailable";
    case ENOENT: return "not_found";
    case ENOMEM: return "out_of_memory";
    case ETIMEDOUT: return "timeout";
    default: return "error";
    }
}

int wlm_error_http_status(int code)
{
    switch (code < 0 ? -code : code) {
    case 0: return 200;
    case WLM_EINVAL: return 400;
    case WLM_EAUTH: return 401;
    case WLM_ENOTFOUND: case ENOENT: return 404;
    case WLM_ECONFLICT: return 409;
    case WLM_ELIMIT: return 413;
    case WLM_EUNSUPPORTED: return 501;
    case WLM_ETIMEOUT: case ETIMEDOUT: return 504;
    case WLM_EIO: return 502;
    case WLM_EUNAVAIL: return 503;
    default: return 500;
    }
}
