/* flowctl_int.h - private helpers shared by the flowctl sources. */
#ifndef WLM_FLOWCTL_INT_H
#define WLM_FLOWCTL_INT_H

#include "common.h"

/* Fill err (if not NULL) like wlm_error_setf and return -code. Kept private so
 * the pure core links without common's .c files. */
int fc__err(struct wlm_error *err, int code, const char *field, const char *fmt, ...)
    WLM_PRINTF(4, 5);

#endif
