/* dashboard.h - the admin dashboard's static files, built into the binary
 * so the controller serves them without a path to the source tree. */
#ifndef WLM_DASHBOARD_H
#define WLM_DASHBOARD_H

#include <stddef.h>

struct dashboard_asset {
    const char *path; /* "index.html" */
    const char *content_type;
    const unsigned char *data; /* static, not NUL-terminated */
    size_t len;
};

/* The asset for a path relative to the dashboard root ("" = index.html), or
 * NULL. Returned memory is static. */
const struct dashboard_asset *dashboard_find(const char *path);

#endif
