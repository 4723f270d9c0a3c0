/* config.c - typed configuration from defaults, a JSON file, the environment
 * and command-line flags, validated field by field. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common.h"

static int field_range_ok(const struct wlm_cfg_field *f, double x)
{
    return f->min > f->max || (x >= f->min && x <= f->max);
}

static int field_range_error(const struct wlm_cfg_field *f, const char *src, const char *text,
                             struct wlm_error *err)
{
    return wlm_error_setf(err, WLM_EINVAL, f->name, "%s%s: %s is out of range [%g, %g]", src,
                          f->name, text, f->min, f->max);
}

/* Parse text into the field; `src` prefixes the message ("env WLM_X: "). */
static int field_set_text(const struct wlm_cfg_field *f, void *cfg, const char *text,
                          const char *src, struct wlm_error *err)
{
    char *p = (char *)cfg + f->offset;
    char *end;
    switch (f->type) {
    case WLM_CFG_STR:
        if (strlen(text) >= f->size)
            return wlm_error_setf(err, WLM_EINVAL, f->name, "%s%s: longer than %zu characters",
                                  src, f->name, f->size - 1);
        wlm_strlcpy(p, text, f->size);
        return 0;
    case WLM_CFG_INT: {
        errno = 0;
        long long x = strtoll(text, &end, 10);
        if (errno || end == text || *end)
            return wlm_error_setf(err, WLM_EINVAL, f->name, "%s%s: '%s' is not an integer", src,
                                  f->name, text);
        if (!field_range_ok(f, (double)x))
            return field_range_error(f, src, text, err);
        *(long long *)p = x;
        return 0;
    }
    case WLM_CFG_NUM: {
        errno = 0;
        double x = strtod(text, &end);
        if (errno || end == text || *end || !isfinite(x))
            return wlm_error_setf(err, WLM_EINVAL, f->name, "%s%s: '%s' is not a number", src,
                                  f->name, text);
        if (!field_range_ok(f, x))
            return field_range_error(f, src, text, err);
        *(double *)p = x;
        return 0;
    }
    case WLM_CFG_BOOL:
        if (!strcasecmp(text, "true") || !strcmp(text, "1") || !strcasecmp(text, "yes") ||
            !strcasecmp(text, "on")) {
            *(int *)p = 1;
        } else if (!strcasecmp(text, "false") || !strcmp(text, "0") || !strcasecmp(text, "no") ||
                   !strcasecmp(text, "off")) {
            *(int *)p = 0;
        } else {
            return wlm_error_setf(err, WLM_EINVAL, f->name, "%s%s: '%s' is not true or false",
                                  src, f->name, text);
        }
        return 0;
    }
    return wlm_error_setf(err, WLM_EINTERNAL, f->name, "%s: bad field type", f->name);
}

static int field_set_json(const struct wlm_cfg_field *f, void *cfg, json_t *v, const char *path,
                          struct wlm_error *err)
{
    char src[300];
    snprintf(src, sizeof(src), "%s: ", path);
    char num[64];
    switch (f->type) {
    case WLM_CFG_STR:
        if (!json_is_string(v))
            return wlm_error_setf(err, WLM_EINVAL, f->name, "%s%s: expected a string", src,
                                  f->name);
        return field_set_text(f, cfg, json_string_value(v), src, err);
    case WLM_CFG_INT:
        if (!json_is_integer(v))
            return wlm_error_setf(err, WLM_EINVAL, f->name, "%s%s: expected an integer", src,
                                  f->name);
        snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(v));
        return field_set_text(f, cfg, num, src, err);
    case WLM_CFG_NUM:
        if (!json_is_number(v))
            return wlm_error_setf(err, WLM_EINVAL, f->name, "%s%s: expected a number", src,
                                  f->name);
        snprintf(num, sizeof(num), "%.17g", json_number_value(v));
        return field_set_text(f, cfg, num, src, err);
    case WLM_CFG_BOOL:
        if (!json_is_boolean(v))
            return wlm_error_setf(err, WLM_EINVAL, f->name, "%s%s: expected true or false", src,
                                  f->name);
        *(int *)((char *)cfg + f->offset) = json_is_true(v);
        return 0;
    }
    return -WLM_EINTERNAL;
}

static const struct wlm_cfg_field *field_find(const struct wlm_cfg_field *fields, size_t n,
                                              const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(fields[i].name, name) == 0)
            return &fields[i];
    return NULL;
}

int wlm_config_load(const struct wlm_cfg_field *fields, size_t n, void *cfg, const char *path,
                    struct wlm_error *err)
{
    int rc;
    for (size_t i = 0; i < n; i++) {
        if (fields[i].type == WLM_CFG_STR && fields[i].size)
            ((char *)cfg + fields[i].offset)[0] = '\0';
        if (fields[i].defval &&
            (rc = field_set_text(&fields[i], cfg, fields[i].defval, "default ", err)))
            return rc;
    }
    if (path && *path) {
        json_t *root = wlm_json_load_file(path, err);
        if (!root)
            return err ? err->code : -WLM_EINVAL;
        const char *key;
        json_t *v;
        rc = 0;
        json_object_foreach(root, key, v) {
            const struct wlm_cfg_field *f = field_find(fields, n, key);
            if (!f) {
                rc = wlm_error_setf(err, WLM_EINVAL, key, "%s: %s: unknown field", path, key);
                break;
            }
            if ((rc = field_set_json(f, cfg, v, path, err)))
                break;
        }
        json_decref(root);
        if (rc)
            return rc;
    }
    for (size_t i = 0; i < n; i++) {
        const char *ev = fields[i].env ? getenv(fields[i].env) : NULL;
        if (ev) {
            char src[128];
            snprintf(src, sizeof(src), "environment %s: ", fields[i].env);
            if ((rc = field_set_text(&fields[i], cfg, ev, src, err)))
                return rc;
        }
    }
    return 0;
}

int wlm_config_set(const struct wlm_cfg_field *fields, size_t n, void *cfg, const char *name,
                   const char *value, struct wlm_error *err)
{
    const struct wlm_cfg_field *f = field_find(fields, n, name);
    if (!f)
        return wlm_error_setf(err, WLM_EINVAL, name, "%s: unknown setting", name);
    return field_set_text(f, cfg, value, "", err);
}

static void flag_name(const char *field, char *out, size_t size)
{
    wlm_strlcpy(out, field, size);
    for (char *p = out; *p; p++)
        if (*p == '_')
            *p = '-';
}

void wlm_config_print_help(const struct wlm_cfg_field *fields, size_t n, FILE *out)
{
    for (size_t i = 0; i < n; i++) {
        char flag[80];
        flag_name(fields[i].name, flag, sizeof(flag));
        fprintf(out, "  --%-22s %s", flag, fields[i].help ? fields[i].help : "");
        if (fields[i].defval && *fields[i].defval)
            fprintf(out, " (default %s)", fields[i].defval);
        if (fields[i].env)
            fprintf(out, " [env %s]", fields[i].env);
        fputc('\n', out);
    }
}

static const struct wlm_cfg_field *flag_find(const struct wlm_cfg_field *fields, size_t n,
                                             const char *flag, size_t len)
{
    for (size_t i = 0; i < n; i++) {
        char name[80];
        flag_name(fields[i].name, name, sizeof(name));
        if (strlen(name) == len && strncmp(name, flag, len) == 0)
            return &fields[i];
    }
    return NULL;
}

int wlm_daemon_args(int argc, char **argv, const char *prog, const char *summary,
                    const struct wlm_cfg_field *fields, size_t n, void *cfg, struct wlm_error *err)
{
    const char *config = NULL;
    const char *level = NULL;
    /* First pass: what decides how the rest is read. */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("Usage: %s [OPTIONS]\n%s\n\nOptions:\n", prog, summary);
            printf("  --%-22s %s\n", "config FILE", "JSON file with any of the settings below");
            printf("  --%-22s %s\n", "log-level LEVEL", "debug, info, warn, error, off (default info)");
            wlm_config_print_help(fields, n, stdout);
            printf("  --%-22s %s\n  --%-22s %s\n", "help", "show this help", "version",
                   "print the version");
            printf("\nPrecedence: defaults < config file < environment < flags.\n");
            return 1;
        }
        if (!strcmp(a, "--version")) {
            printf("%s %s\n", prog, WLM_VERSION);
            return 1;
        }
        if (!strcmp(a, "--config") || !strcmp(a, "--log-level")) {
            if (i + 1 >= argc)
                return wlm_error_setf(err, WLM_EINVAL, a + 2, "%s needs a value", a);
            if (!strcmp(a, "--config"))
                config = argv[++i];
            else
                level = argv[++i];
        } else if (!strncmp(a, "--config=", 9)) {
            config = a + 9;
        } else if (!strncmp(a, "--log-level=", 12)) {
            level = a + 12;
        }
    }
    if (!level)
        level = getenv("WLM_LOG_LEVEL");
    if (level) {
        enum wlm_log_level l;
        if (wlm_log_parse_level(level, &l))
            return wlm_error_setf(err, WLM_EINVAL, "log-level",
                                  "--log-level: '%s' is not one of debug, info, warn, error, off",
                                  level);
        wlm_log_set_level(l);
    }
    int rc = wlm_config_load(fields, n, cfg, config, err);
    if (rc)
        return rc;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--config") || !strcmp(a, "--log-level")) {
            i++;
            continue;
        }
        if (!strncmp(a, "--config=", 9) || !strncmp(a, "--log-level=", 12))
            continue;
        if (strncmp(a, "--", 2) != 0)
            return wlm_error_set(err, WLM_EINVAL, "unexpected argument '%s' (see --help)", a);
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const struct wlm_cfg_field *f = flag_find(fields, n, name, len);
        if (!f)
            return wlm_error_set(err, WLM_EINVAL, "unknown option '%.*s' (see --help)",
                                 (int)len + 2, a);
        const char *value;
        if (eq) {
            value = eq + 1;
        } else if (f->type == WLM_CFG_BOOL &&
                   (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0)) {
            value = "true";
        } else {
            if (i + 1 >= argc)
                return wlm_error_setf(err, WLM_EINVAL, f->name, "--%.*s needs a value", (int)len,
                                      name);
            value = argv[++i];
        }
        char src[100];
        snprintf(src, sizeof(src), "--");
        if ((rc = field_set_text(f, cfg, value, src, err)))
            return rc;
    }
    return 0;
}
