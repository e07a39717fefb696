/* `accmig demo` and `accmig bench engine` as a user runs them: exit status,
 * the JSON report's fields, and clear refusals of what is not available.
 * The accmig binary's path is the first argument. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#define OUT_MAX (64u << 10)

struct run {
    int status; /* exit status, or -1 if it did not exit normally */
    char out[OUT_MAX];
    char err[OUT_MAX];
};

static void drain(int fd, char *buf)
{
    size_t n = 0;
    ssize_t r;

    while ((r = read(fd, buf + n, OUT_MAX - 1 - n)) > 0)
        n += (size_t)r;
    buf[n] = '\0';
    close(fd);
}

/* Run accmig with args (NULL-terminated); stdout and stderr captured (each
 * read fully; the outputs here are small, so one after the other is fine). */
static void run_accmig(const char *exe, const char *const *args, struct run *r)
{
    int po[2], pe[2], st;
    const char *argv[32];
    unsigned n = 0;
    pid_t pid;

    argv[n++] = exe;
    for (; args[n - 1] && n < 31; n++)
        argv[n] = args[n - 1];
    argv[n] = NULL;
    assert_int_equal(pipe(po), 0);
    assert_int_equal(pipe(pe), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(po[1], 1);
        dup2(pe[1], 2);
        close(po[0]);
        close(pe[0]);
        execv(exe, (char *const *)argv);
        _exit(127);
    }
    close(po[1]);
    close(pe[1]);
    drain(po[0], r->out);
    drain(pe[0], r->err);
    assert_int_equal(waitpid(pid, &st, 0), pid);
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int64_t jint(json_object *o, const char *key)
{
    json_object *v;

    if (!json_object_object_get_ex(o, key, &v))
        fail_msg("the report has no '%s'", key);
    return json_object_get_int64(v);
}

static void test_demo_json_reports_every_job_verified_once_and_exits_0(void **state)
{
    const char *exe = *state;
    static const char *const args[] = {"demo", "--jobs", "24", "--max-size", "64K", "--seed", "3",
                                       "--migrations", "0", "--transport", "inproc", "--json", NULL};
    struct run *r = calloc(1, sizeof(*r));
    json_object *j, *log, *v;

    run_accmig(exe, args, r);
    assert_int_equal(r->status, 0);
    j = json_tokener_parse(r->out);
    assert_non_null(j);
    assert_true(json_object_is_type(j, json_type_object));
    assert_int_equal(jint(j, "jobs_submitted"), 24);
    assert_int_equal(jint(j, "jobs_completed"), 24);
    assert_int_equal(jint(j, "jobs_verified"), 24);
    assert_int_equal(jint(j, "jobs_failed"), 0);
    assert_int_equal(jint(j, "jobs_duplicated"), 0);
    assert_int_equal(jint(j, "jobs_lost"), 0);
    assert_int_equal(jint(j, "migrations"), 0);
    assert_true(jint(j, "bytes_in") > 0);
    assert_true(jint(j, "bytes_out") > 0);
    assert_true(json_object_object_get_ex(j, "elapsed_ms", &v));
    assert_true(json_object_get_double(v) > 0.0);
    assert_true(json_object_object_get_ex(j, "migration_log", &log));
    assert_true(json_object_is_type(log, json_type_array));
    assert_int_equal(json_object_array_length(log), 0);
    assert_true(json_object_object_get_ex(j, "verdict", &v));
    assert_string_equal(json_object_get_string(v), "ok");
    /* exactly one JSON object on stdout */
    assert_non_null(strchr(r->out, '\n'));
    assert_string_equal(strchr(r->out, '\n'), "\n");
    json_object_put(j);
    free(r);
}

static void test_demo_with_stream_jobs_verifies_them_across_migrations(void **state)
{
    const char *exe = *state;
    static const char *const args[] = {"demo", "--jobs", "30", "--max-size", "128K", "--seed", "5",
                                       "--stream-percent", "50", "--migrations", "2",
                                       "--transport", "inproc", "--json", NULL};
    struct run *r = calloc(1, sizeof(*r));
    json_object *j, *v;

    run_accmig(exe, args, r);
    if (r->status != 0)
        fail_msg("exit %d: %s", r->status, r->err);
    j = json_tokener_parse(r->out);
    assert_non_null(j);
    assert_int_equal(jint(j, "jobs_verified"), 30);
    assert_int_equal(jint(j, "jobs_failed"), 0);
    assert_int_equal(jint(j, "jobs_duplicated"), 0);
    assert_int_equal(jint(j, "jobs_lost"), 0);
    assert_int_equal(jint(j, "migrations"), 2);
    assert_true(jint(j, "stream_jobs") > 0 && jint(j, "stream_jobs") < 30);
    assert_true(jint(j, "stream_pieces") >= 4 * jint(j, "stream_jobs"));
    assert_true(json_object_object_get_ex(j, "verdict", &v));
    assert_string_equal(json_object_get_string(v), "ok");
    json_object_put(j);
    free(r);
}

static void test_demo_text_summary_ends_with_the_verdict(void **state)
{
    const char *exe = *state;
    static const char *const args[] = {"demo", "--transport", "inproc", "--jobs", "8", "--max-size", "16K", "--qps", "2",
                                       "--vcpus", "2", NULL};
    struct run *r = calloc(1, sizeof(*r));

    run_accmig(exe, args, r);
    assert_int_equal(r->status, 0);
    assert_non_null(strstr(r->out, "8 verified"));
    assert_non_null(strstr(r->out, "verdict: OK"));
    free(r);
}

static void expect_usage_error(const char *exe, const char *const *args, const char *words)
{
    struct run *r = calloc(1, sizeof(*r));

    run_accmig(exe, args, r);
    assert_int_equal(r->status, 2);
    if (!strstr(r->err, words))
        fail_msg("stderr does not mention '%s': %s", words, r->err);
    assert_string_equal(r->out, "");
    free(r);
}

static void test_demo_refuses_what_it_cannot_do_with_a_clear_message(void **state)
{
    const char *exe = *state;
    static const char *const mig[] = {"demo", "--migrations", "1001", NULL};
    static const char *const tr[] = {"demo", "--transport", "carrier-pigeon", NULL};
    static const char *const qps[] = {"demo", "--qps", "3", NULL};
    static const char *const jobs[] = {"demo", "--jobs", "12x", NULL};
    static const char *const zero[] = {"demo", "--jobs", "0", NULL};
    static const char *const sizes[] = {"demo", "--min-size", "64K", "--max-size", "4K", NULL};
    static const char *const big[] = {"demo", "--max-size", "5M", NULL};
    static const char *const unk[] = {"demo", "--frobnicate", NULL};
    static const char *const extra[] = {"demo", "stray", NULL};
    static const char *const strm[] = {"demo", "--stream-percent", "101", NULL};

    expect_usage_error(exe, mig, "--migrations");
    expect_usage_error(exe, tr, "carrier-pigeon");
    expect_usage_error(exe, qps, "qps");
    expect_usage_error(exe, jobs, "12x");
    expect_usage_error(exe, zero, "--jobs");
    expect_usage_error(exe, sizes, "size");
    expect_usage_error(exe, big, "--max-size");
    expect_usage_error(exe, unk, "--frobnicate");
    expect_usage_error(exe, extra, "stray");
    expect_usage_error(exe, strm, "--stream-percent");
}

static void test_bench_engine_prints_one_json_line_with_both_throughputs(void **state)
{
    const char *exe = *state;
    static const char *const args[] = {"bench", "engine", "--size", "16K", "--jobs", "20",
                                       "--rounds", "1", "--json", NULL};
    static const char *const bad[] = {"bench", "engine", "--size", "0", NULL};
    static const char *const none[] = {"bench", "nosuch", NULL};
    struct run *r = calloc(1, sizeof(*r));
    json_object *j, *v;

    run_accmig(exe, args, r);
    assert_int_equal(r->status, 0);
    j = json_tokener_parse(r->out);
    assert_non_null(j);
    assert_true(json_object_object_get_ex(j, "bench", &v));
    assert_string_equal(json_object_get_string(v), "engine");
    assert_int_equal(jint(j, "size"), 16384);
    assert_int_equal(jint(j, "jobs"), 20);
    assert_true(json_object_object_get_ex(j, "raw_mb_s", &v));
    assert_true(json_object_get_double(v) > 0.0);
    assert_true(json_object_object_get_ex(j, "engine_mb_s", &v));
    assert_true(json_object_get_double(v) > 0.0);
    assert_true(json_object_object_get_ex(j, "ratio", &v));
    assert_true(json_object_get_double(v) > 0.0);
    json_object_put(j);
    free(r);
    expect_usage_error(exe, bad, "--size");
    expect_usage_error(exe, none, "nosuch");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s PATH-TO-ACCMIG\n", argv[0]);
        return 2;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate(test_demo_json_reports_every_job_verified_once_and_exits_0, argv[1]),
        cmocka_unit_test_prestate(test_demo_with_stream_jobs_verifies_them_across_migrations, argv[1]),
        cmocka_unit_test_prestate(test_demo_text_summary_ends_with_the_verdict, argv[1]),
        cmocka_unit_test_prestate(test_demo_refuses_what_it_cannot_do_with_a_clear_message, argv[1]),
        cmocka_unit_test_prestate(test_bench_engine_prints_one_json_line_with_both_throughputs,
                                  argv[1]),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
