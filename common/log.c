/* log.c - one line per event: time, level, component, message, key=value. */
#include <pthread.h>
#include <string.h>
#include <strings.h>

#include "common.h"

static enum wlm_log_level log_level = WLM_LOG_INFO;
static FILE *log_stream;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void wlm_log_set_level(enum wlm_log_level level) { log_level = level; }
enum wlm_log_level wlm_log_get_level(void) { return log_level; }
void wlm_log_set_stream(FILE *f) { log_stream = f; }

int wlm_log_parse_level(const char *s, enum wlm_log_level *out)
{
    static const char *names[] = {"debug", "info", "warn", "error", "off"};
    for (size_t i = 0; i < WLM_ARRAY_LEN(names); i++) {
        if (strcasecmp(s, names[i]) == 0) {
            *out = (enum wlm_log_level)i;
            return 0;
        }
    }
    if (strcasecmp(s, "warning") == 0) {
        *out = WLM_LOG_WARN;
        return 0;
    }
    return -WLM_EINVAL;
}

void wlm_log(enum wlm_log_level level, const char *component, const char *msg, const char *fields,
             ...)
{
    static const char *tags[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};
    if (level < log_level || level >= WLM_LOG_OFF)
        return;
    char ts[40];
    wlm_time_format(wlm_now_wall(), ts, sizeof(ts));
    struct wlm_buf b;
    wlm_buf_init(&b);
    wlm_buf_printf(&b, "%s %s %s: %s", ts, tags[level], component ? component : "-", msg);
    if (fields && *fields) {
        va_list ap;
        va_start(ap, fields);
        wlm_buf_append(&b, " ", 1);
        wlm_buf_vprintf(&b, fields, ap);
        va_end(ap);
    }
    wlm_buf_append(&b, "\n", 1);
    /* One write per line under a lock, so lines from threads never interleave. */
    pthread_mutex_lock(&log_lock);
    FILE *f = log_stream ? log_stream : stderr;
    if (b.data) {
        fwrite(b.data, 1, b.len, f);
        fflush(f);
    }
    pthread_mutex_unlock(&log_lock);
    wlm_buf_fini(&b);
}
