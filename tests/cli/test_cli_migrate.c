/* `accmig demo --migrations M` and `accmig bench migrate` as a user runs
 * them: exit status, the JSON fields, exactly-once across migrations, saved
 * device-state streams that `accmig inspect` decodes, and clear refusals.
 * The accmig binary's path is the first argument. */
#include <dirent.h>
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

#define OUT_MAX (256u << 10)

/* Runs `exe cmd` through the shell; stdout into out, stderr into err (when
 * not NULL); returns the exit status (-1 when it did not exit). */
static int sh_run(const char *exe, const char *cmd, char *out, char *err)
{
    char line[1024], errpath[] = "/tmp/accmig-cli-mig-err-XXXXXX";
    int fd = mkstemp(errpath), st;
    size_t n = 0;
    FILE *p;

    assert_true(fd >= 0);
    close(fd);
    snprintf(line, sizeof(line), "'%s' %s 2>'%s'", exe, cmd, errpath);
    p = popen(line, "r");
    assert_non_null(p);
    n = fread(out, 1, OUT_MAX - 1, p);
    out[n] = '\0';
    st = pclose(p);
    if (err) {
        FILE *f = fopen(errpath, "r");

        assert_non_null(f);
        n = fread(err, 1, OUT_MAX - 1, f);
        err[n] = '\0';
        fclose(f);
    }
    unlink(errpath);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int64_t jint(json_object *o, const char *key)
{
    json_object *v;

    if (!json_object_object_get_ex(o, key, &v))
        fail_msg("no '%s' in %s", key, json_object_to_json_string(o));
    return json_object_get_int64(v);
}

static const char *jstr(json_object *o, const char *key)
{
    json_object *v;

    if (!json_object_object_get_ex(o, key, &v))
        fail_msg("no '%s' in %s", key, json_object_to_json_string(o));
    return json_object_get_string(v);
}

static void rm_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[1024];

    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        assert_int_equal(unlink(path), 0);
    }
    closedir(d);
    assert_int_equal(rmdir(dir), 0);
}

static void test_demo_with_three_migrations_reports_each_and_every_job_once(void **state)
{
    const char *exe = *state;
    static const char *const fields[] = {
        "device_state_bytes", "precopy_rounds", "ram_bytes", "downtime_us", "quiesce_us",
        "save_us", "restore_us", "resume_us", "device_head_bytes", "precopy_bytes",
        "last_pages", "device_downtime_us", "sqes_in_flight_at_pause",
    };
    char *out = malloc(OUT_MAX);
    json_object *j, *log;
    int st;

    assert_non_null(out);
    st = sh_run(exe, "demo --jobs 60 --max-size 64K --seed 5 --migrations 3 --transport inproc --json",
                out, NULL);
    assert_int_equal(st, 0);
    j = json_tokener_parse(out);
    assert_non_null(j);
    assert_string_equal(jstr(j, "verdict"), "ok");
    assert_int_equal(jint(j, "migrations"), 3);
    assert_int_equal(jint(j, "jobs_verified"), 60);
    assert_int_equal(jint(j, "jobs_duplicated"), 0);
    assert_int_equal(jint(j, "jobs_lost"), 0);
    assert_int_equal(jint(j, "jobs_failed"), 0);
    assert_true(json_object_object_get_ex(j, "migration_log", &log));
    assert_int_equal(json_object_array_length(log), 3);
    for (size_t i = 0; i < 3; i++) {
        json_object *m = json_object_array_get_idx(log, i), *ok;

        assert_int_equal(jint(m, "n"), (int64_t)i + 1);
        assert_string_equal(jstr(m, "direction"), i % 2 ? "B->A" : "A->B");
        assert_string_equal(jstr(m, "from"), i % 2 ? "B" : "A");
        assert_string_equal(jstr(m, "to"), i % 2 ? "A" : "B");
        assert_true(json_object_object_get_ex(m, "ok", &ok) && json_object_get_boolean(ok));
        for (size_t f = 0; f < sizeof(fields) / sizeof(fields[0]); f++)
            assert_true(jint(m, fields[f]) >= 0);
        assert_true(jint(m, "device_state_bytes") > 0 && jint(m, "device_state_bytes") <= 512);
        assert_true(jint(m, "precopy_rounds") >= 1);
        assert_true(jint(m, "ram_bytes") > 0);
    }
    json_object_put(j);
    free(out);
}

static void test_demo_text_prints_a_line_per_migration(void **state)
{
    const char *exe = *state;
    char *out = malloc(OUT_MAX);

    assert_non_null(out);
    assert_int_equal(sh_run(exe, "demo --transport inproc --jobs 30 --max-size 32K --qps 2 --vcpus 2 --migrations 2",
                            out, NULL), 0);
    assert_non_null(strstr(out, "migration 1 A->B"));
    assert_non_null(strstr(out, "migration 2 B->A"));
    assert_null(strstr(out, "migration 3"));
    assert_non_null(strstr(out, "verdict: OK"));
    free(out);
}

static void test_demo_save_state_writes_streams_that_inspect_decodes(void **state)
{
    const char *exe = *state;
    char dir[] = "/tmp/accmig-cli-mig-XXXXXX", cmd[512];
    char *out = malloc(OUT_MAX);
    json_object *j;

    assert_non_null(out);
    assert_non_null(mkdtemp(dir));
    snprintf(cmd, sizeof(cmd), "demo --transport inproc --jobs 40 --max-size 32K --migrations 2 --save-state '%s/s'",
             dir);
    assert_int_equal(sh_run(exe, cmd, out, NULL), 0);
    for (int n = 1; n <= 2; n++) {
        snprintf(cmd, sizeof(cmd), "inspect '%s/s/migration-%d.bin'", dir, n);
        assert_int_equal(sh_run(exe, cmd, out, NULL), 0);
        snprintf(cmd, sizeof(cmd), "inspect --json '%s/s/migration-%d.bin'", dir, n);
        assert_int_equal(sh_run(exe, cmd, out, NULL), 0);
        j = json_tokener_parse(out);
        assert_non_null(j);
        json_object_put(j);
    }
    snprintf(cmd, sizeof(cmd), "%s/s/migration-3.bin", dir);
    assert_int_equal(access(cmd, F_OK), -1);
    snprintf(cmd, sizeof(cmd), "%s/s", dir);
    rm_dir(cmd);
    assert_int_equal(rmdir(dir), 0);
    free(out);
}

static void test_bench_migrate_prints_an_idle_and_a_busy_line_with_every_job_once(void **state)
{
    const char *exe = *state;
    char *out = malloc(OUT_MAX), *line, *save = NULL;
    unsigned lines = 0;

    assert_non_null(out);
    assert_int_equal(sh_run(exe, "bench migrate --migrations 6 --qps 2 --hw v4,v3 --min-size 64K "
                                 "--max-size 256K --interval-us 200",
                            out, NULL), 0);
    for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_object *j = json_tokener_parse(line), *v;

        assert_non_null(j);
        assert_string_equal(jstr(j, "bench"), "migrate");
        assert_string_equal(jstr(j, "hw"), lines < 2 ? "v4" : "v3");
        assert_string_equal(jstr(j, "load"), lines % 2 ? "busy" : "idle");
        assert_int_equal(jint(j, "qps"), 2);
        assert_int_equal(jint(j, "migrations"), 6);
        assert_int_equal(jint(j, "failed_migrations"), 0);
        assert_true(jint(j, "state_bytes") > 0 && jint(j, "state_bytes_max") <= 512);
        assert_true(json_object_object_get_ex(j, "downtime_p99_us", &v));
        assert_true(json_object_get_double(v) >= 0.0);
        assert_true(json_object_object_get_ex(j, "exactly_once", &v) && json_object_get_boolean(v));
        if (lines % 2) {
            assert_true(jint(j, "jobs") > 0);
            assert_true(json_object_object_get_ex(j, "idle_p50_us", &v));
        }
        json_object_put(j);
        lines++;
    }
    assert_int_equal(lines, 4);
    free(out);
}

static void test_bench_migrate_refuses_bad_usage_including_a_bad_ram_size(void **state)
{
    const char *exe = *state;
    static const char *const bad[] = {
        "bench migrate --qps 0", "bench migrate --qps 65", "bench migrate --hw v5",
        "bench migrate --migrations 0", "bench migrate --min-size 8M --max-size 1M",
        "bench migrate --max-size 9M", "bench migrate --frobnicate", "bench migrate stray",
    };
    char *out = malloc(OUT_MAX), *err = malloc(OUT_MAX);

    assert_non_null(out);
    assert_non_null(err);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (sh_run(exe, bad[i], out, err) != 2)
            fail_msg("'%s' did not exit 2", bad[i]);
        assert_string_equal(out, "");
        assert_non_null(strstr(err, "accmig bench migrate"));
    }
    assert_int_equal(sh_run(exe, "bench migrate --ram 12x", out, err), 2);
    assert_non_null(strstr(err, "--ram wants a number"));
    assert_int_equal(sh_run(exe, "bench migrate --help", out, err), 0);
    assert_non_null(strstr(out, "--migrations"));
    free(out);
    free(err);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s PATH-TO-ACCMIG\n", argv[0]);
        return 2;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate(test_demo_with_three_migrations_reports_each_and_every_job_once,
                                  argv[1]),
        cmocka_unit_test_prestate(test_demo_text_prints_a_line_per_migration, argv[1]),
        cmocka_unit_test_prestate(test_demo_save_state_writes_streams_that_inspect_decodes, argv[1]),
        cmocka_unit_test_prestate(test_bench_migrate_prints_an_idle_and_a_busy_line_with_every_job_once,
                                  argv[1]),
        cmocka_unit_test_prestate(test_bench_migrate_refuses_bad_usage_including_a_bad_ram_size,
                                  argv[1]),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
