/* fuzz_snapshot.c - libFuzzer target: placement snapshots (`wlm plan`).
 *
 * The input is a snapshot file. Parsing must accept or refuse it with a
 * message; an accepted snapshot must pass placement_problem_check, and when
 * it is small it is solved (exact solver with a short time limit on half of
 * the inputs, heuristic on the other half) and the decision rendered as JSON.
 * Solving large inputs would make each run slow without finding more. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <jansson.h>

#include "placement.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t jerr;
    json_t *root = json_loadb((const char *)data, size, 0, &jerr);
    if (!root)
        return 0;
    struct placement_problem *p = NULL;
    struct wlm_error err = {0};
    if (placement_snapshot_parse(root, &p, &err) != 0) {
        if (err.msg[0] == '\0')
            abort(); /* a refusal must say why */
        json_decref(root);
        return 0;
    }
    json_decref(root);
    struct wlm_error cerr = {0};
    /* The loader validates, so its output must pass the structural check. */
    if (placement_problem_check(p, &cerr) != 0)
        abort();
    if (p->nnodes <= 8 && p->nworkloads <= 12) {
        p->opts.time_limit_s = 0.05;
        p->opts.solver = (size & 1) ? PLACEMENT_SOLVER_EXACT : PLACEMENT_SOLVER_HEURISTIC;
        struct placement_decision *d = NULL;
        struct wlm_error serr = {0};
        if (placement_solve(p, &d, &serr) == 0) {
            json_t *j = placement_decision_to_json(p, d);
            json_decref(j);
            placement_decision_free(d);
        }
    }
    placement_problem_free(p);
    return 0;
}
