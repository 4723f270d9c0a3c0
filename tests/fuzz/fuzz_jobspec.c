/* fuzz_jobspec.c - libFuzzer target: job specs as POSTed to /v1/jobs.
 *
 * The input is the request body. jobsched_batch_parse must either accept it
 * (with 1..max_batch jobs) or fail with an error message; it must
 * never crash, leak or read out of bounds. Even ids 2..64 "exist" so
 * dependencies on existing jobs are exercised as well as unknown ones. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <jansson.h>

#include "jobsched.h"

static int exists(int64_t id, void *ud)
{
    (void)ud;
    return id >= 2 && id <= 64 && id % 2 == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t jerr;
    json_t *body = json_loadb((const char *)data, size, JSON_DECODE_ANY, &jerr);
    if (!body)
        return 0;
    struct jobsched_config cfg;
    jobsched_config_default(&cfg);
    cfg.max_batch = 64; /* keeps one input cheap; the limit itself is checked too */
    struct jobsched_batch b = {0};
    struct wlm_error err = {0};
    int rc = jobsched_batch_parse(body, 1.7e9, (size & 1) ? "idem" : NULL, &cfg, exists, NULL, &b,
                                  &err);
    if (rc == 0) {
        if (b.njobs == 0 || b.njobs > cfg.max_batch)
            abort();
        jobsched_batch_fini(&b);
    } else if (err.msg[0] == '\0') {
        abort(); /* a refusal must say why */
    }
    json_decref(body);
    return 0;
}
