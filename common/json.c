/* json.c - typed access to jansson objects with errors that name the field. */
#include <math.h>
#include <string.h>

#include "common.h"

static const char *json_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "integer";
    case JSON_REAL: return "number";
    case JSON_TRUE: case JSON_FALSE: return "boolean";
    default: return "null";
    }
}

/* Shared prologue: returns 1 when the member is present, 0 when absent and
 * optional, or a negative error. */
static int json_member(const json_t *obj, const char *key, int required, json_t **out,
                       struct wlm_error *err)
{
    *out = NULL;
    if (!json_is_object(obj))
        return wlm_error_setf(err, WLM_EINVAL, key, "%s: expected an object around it", key);
    *out = json_object_get(obj, key);
    if (!*out || json_is_null(*out)) {
        if (required)
            return wlm_error_setf(err, WLM_EINVAL, key, "%s: required", key);
        return 0;
    }
    return 1;
}

int wlm_json_get_str(const json_t *obj, const char *key, int required, const char **out,
                     struct wlm_error *err)
{
    json_t *v;
    int rc = json_member(obj, key, required, &v, err);
    if (rc <= 0)
        return rc;
    if (!json_is_string(v))
        return wlm_error_setf(err, WLM_EINVAL, key, "%s: expected a string, got %s", key,
                              json_type_name(v));
    *out = json_string_value(v);
    return 0;
}

int wlm_json_get_int(const json_t *obj, const char *key, int required, long long min, long long max,
                     long long *out, struct wlm_error *err)
{
    json_t *v;
    int rc = json_member(obj, key, required, &v, err);
    if (rc <= 0)
        return rc;
    long long x;
    if (json_is_integer(v)) {
        x = json_integer_value(v);
    } else if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) &&
               fabs(json_real_value(v)) < 9e15) {
        x = (long long)json_real_value(v);
    } else {
        return wlm_error_setf(err, WLM_EINVAL, key, "%s: expected an integer, got %s", key,
                              json_type_name(v));
    }
    if (x < min || x > max)
        return wlm_error_setf(err, WLM_EINVAL, key, "%s: %lld is out of range [%lld, %lld]", key,
                              x, min, max);
    *out = x;
    return 0;
}

int wlm_json_get_num(const json_t *obj, const char *key, int required, double min, double max,
                     double *out, struct wlm_error *err)
{
    json_t *v;
    int rc = json_member(obj, key, required, &v, err);
    if (rc <= 0)
        return rc;
    if (!json_is_number(v))
        return wlm_error_setf(err, WLM_EINVAL, key, "%s: expected a number, got %s", key,
                              json_type_name(v));
    double x = json_number_value(v);
    if (!isfinite(x) || x < min || x > max)
        return wlm_error_setf(err, WLM_EINVAL, key, "%s: %g is out of range [%g, %g]", key, x,
                              min, max);
    *out = x;
    return 0;
}

int wlm_json_get_bool(const json_t *obj, const char *key, int required, int *out,
                      struct wlm_error *err)
{
    json_t *v;
    int rc = json_member(obj, key, required, &v, err);
    if (rc <= 0)
        return rc;
    if (!json_is_boolean(v))
        return wlm_error_setf(err, WLM_EINVAL, key, "%s: expected true or false, got %s", key,
                              json_type_name(v));
    *out = json_is_true(v);
    return 0;
}

int wlm_json_check_keys(const json_t *obj, const char *const *allowed, const char *where,
                        struct wlm_error *err)
{
    if (!json_is_object(obj))
        return wlm_error_setf(err, WLM_EINVAL, where ? where : "", "%s: expected an object",
                              where && *where ? where : "body");
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v) {
        int ok = 0;
        for (size_t i = 0; allowed[i]; i++) {
            if (strcmp(allowed[i], key) == 0) {
                ok = 1;
                break;
            }
        }
        if (!ok) {
            if (where && *where)
                return wlm_error_setf(err, WLM_EINVAL, key, "%s.%s: unknown field", where, key);
            return wlm_error_setf(err, WLM_EINVAL, key, "%s: unknown field", key);
        }
    }
    return 0;
}

json_t *wlm_json_parse_object(const char *data, size_t len, struct wlm_error *err)
{
    json_error_t je;
    json_t *v = json_loadb(data ? data : "", len, JSON_REJECT_DUPLICATES, &je);
    if (!v) {
        wlm_error_set(err, WLM_EINVAL, "malformed JSON at line %d column %d: %s", je.line,
                      je.column, je.text);
        return NULL;
    }
    if (!json_is_object(v)) {
        wlm_error_set(err, WLM_EINVAL, "expected a JSON object, got %s", json_type_name(v));
        json_decref(v);
        return NULL;
    }
    return v;
}

json_t *wlm_json_load_file(const char *path, struct wlm_error *err)
{
    json_error_t je;
    json_t *v = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!v) {
        if (je.line < 0 || strstr(je.text, "unable to open"))
            wlm_error_set(err, WLM_EIO, "%s: %s", path, je.text);
        else
            wlm_error_set(err, WLM_EINVAL, "%s:%d:%d: %s", path, je.line, je.column, je.text);
        return NULL;
    }
    if (!json_is_object(v)) {
        wlm_error_set(err, WLM_EINVAL, "%s: expected a JSON object at the top, got %s", path,
                      json_type_name(v));
        json_decref(v);
        return NULL;
    }
    return v;
}

char *wlm_json_dumps(const json_t *v)
{
    return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
}

json_t *wlm_json_error_body(const char *error, const char *detail)
{
    return json_pack("{s:s, s:s}", "error", error ? error : "error", "detail",
                     detail ? detail : "");
}
