#!/usr/bin/env bash
# `wlm job` against a real wlm-controller: submit (flags and a batch file),
# list, show (reason, dependencies, history), cancel with dependents, wait
# exit codes, idempotent resubmission, and the errors a user sees.
set -euo pipefail
. "$WLM_SOURCE_DIR/scripts/lib.sh"
bin=$WLM_BIN_DIR
for b in wlm wlm-controller; do
  [ -x "$bin/$b" ] || { echo "FAIL: $bin/$b not built" >&2; exit 1; }
done
dir=$(mktemp -d /tmp/wlm-it-jobcli-XXXXXX)
cpid=
cleanup() { [ -n "$cpid" ] && wlm_kill_tree "$cpid"; rm -rf "$dir"; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; tail -20 "$dir/controller.log" >&2 || true; exit 1; }

port=$(wlm_free_port)
export WLM_TOKEN=it-jobcli WLM_CONTROLLER=http://127.0.0.1:$port
"$bin/wlm-controller" --listen-port "$port" --db "$dir/c.db" >"$dir/controller.log" 2>&1 &
cpid=$!
wlm_wait_http "$WLM_CONTROLLER/healthz" 30 || fail "controller did not start"
wlm() { "$bin/wlm" "$@"; }
expect_exit() { # CODE CMD...
  local want=$1; shift
  set +e; "$@" >"$dir/out" 2>"$dir/err"; local got=$?; set -e
  [ "$got" = "$want" ] || fail "'$*' exited $got, want $want; stdout: $(cat "$dir/out"); stderr: $(cat "$dir/err")"
}

# No node has registered: the job waits, and says why.
out=$(wlm job submit --name first --class gold --work-seconds 30 -- /bin/echo hello)
echo "$out" | grep -q '^submitted job 1 (first) PENDING: no node matches: no nodes registered$' \
  || fail "submit output: $out"
out=$(wlm job show 1)
echo "$out" | grep -q 'state: *PENDING: no node matches: no nodes registered' || fail "show: $out"
echo "$out" | grep -q 'command: */bin/echo hello' || fail "show command: $out"
echo "$out" | grep -q 'class: *gold' || fail "show class: $out"
echo "$out" | grep -q 'goal:' || fail "show goal: $out"
echo "$out" | grep -q 'history:' || fail "show history: $out"

# A batch file whose jobs depend on each other by name.
cat >"$dir/batch.json" <<'JSON'
{"batch": "pipeline", "jobs": [
  {"name": "prep",   "command": "prep.sh", "work_seconds": 10},
  {"name": "train",  "command": "train.sh", "class": "platinum", "dependencies": "afterok:prep"},
  {"name": "report", "command": "report.sh", "dependencies": [{"kind": "afterany", "on": "train"}]},
  {"name": "alarm",  "command": "alarm.sh", "dependencies": "afternotok:prep"}
]}
JSON
out=$(wlm job submit -f "$dir/batch.json")
[ "$(echo "$out" | grep -c '^submitted job')" = 4 ] || fail "batch submit: $out"
wlm job show 3 | grep -q 'afterok:2  (PENDING, waiting)' || fail "dependency not shown: $(wlm job show 3)"

# A cycle is rejected with its path, and nothing is stored.
cat >"$dir/cycle.json" <<'JSON'
{"jobs": [{"name": "a", "command": "a", "dependencies": "afterok:b"},
          {"name": "b", "command": "b", "dependencies": "afterok:a"}]}
JSON
expect_exit 1 wlm job submit -f "$dir/cycle.json"
grep -q 'dependency cycle: a -> b -> a' "$dir/err" || fail "cycle message: $(cat "$dir/err")"
expect_exit 1 wlm job submit --command x --class diamond
grep -q "field 'class'" "$dir/err" || fail "bad class message: $(cat "$dir/err")"
n=$(wlm job list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["jobs"]))')
[ "$n" = 5 ] || fail "expected 5 jobs stored, found $n"

# Cancel prep: train fails (afterok), report runs after it (afterany),
# alarm becomes eligible to run (afternotok) -- it then waits for a node.
wlm job cancel 2 | grep -q 'cancelled job 2' || fail "cancel"
wlm job show 3 | grep -q 'FAILED: dependency afterok:2 can never be satisfied (job 2 CANCELLED)' \
  || fail "train should have failed: $(wlm job show 3)"
wlm job show 4 | grep -q 'PENDING: no node matches' || fail "report should wait for a node: $(wlm job show 4)"
wlm job show 5 | grep -q 'PENDING: no node matches' || fail "alarm should wait for a node: $(wlm job show 5)"
out=$(wlm job list --state FAILED,CANCELLED)
echo "$out" | grep -q ' prep ' && echo "$out" | grep -q ' train ' || fail "list --state: $out"

# wait: 1 when a job failed or was cancelled; 4 on timeout.
expect_exit 1 wlm job wait 2 3 --interval 0.1
grep -q '2/2 ended (0 completed, 2 failed/cancelled)' "$dir/err" || fail "wait progress: $(cat "$dir/err")"
expect_exit 4 wlm job wait 1 --timeout 0.3 --interval 0.1

# Resubmitting with the same key does not duplicate.
wlm job submit --submit-id nightly-42 --command run.sh | grep -q '^submitted job 6 ' || fail "keyed submit"
wlm job submit --submit-id nightly-42 --command run.sh | grep -q '^already submitted: job 6 ' \
  || fail "keyed resubmit was not recognised"

# Errors a user sees.
expect_exit 2 wlm job submit --threads
expect_exit 2 wlm job show
WLM_TOKEN=wrong expect_exit 1 wlm job list
grep -q 'refused the token' "$dir/err" || fail "wrong token message: $(cat "$dir/err")"
expect_exit 1 wlm job show 999
grep -q 'no job 999' "$dir/err" || fail "unknown job message: $(cat "$dir/err")"
wlm_kill_tree "$cpid"
cpid=
expect_exit 3 wlm job list
grep -q 'cannot reach the controller' "$dir/err" || fail "unreachable message: $(cat "$dir/err")"
echo "PASS: it_job_cli"
