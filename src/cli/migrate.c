/* accmig migrate --vm CONTROL --to ENDPOINT: tells a running mini-VMM
 * (`accmig vm --control CONTROL`) to live-migrate its guest to the
 * mini-VMM waiting on ENDPOINT (`accmig vm --incoming ENDPOINT`) and prints
 * the outcome. Exit: 0 migrated, 1 the migration failed (the guest carries
 * on at the source), 2 bad usage or the VMM could not be asked, 3 the
 * handover is in doubt (the guest is paused at the source; resolve it).
 *
 * accmig migrate --resolve [--vm SRC] [--peer DST] [--side source|destination]
 * settles a handover in doubt (docs/vm.md): without --side it asks the
 * destination whether it runs the guest (COMMIT arrived) and tells both
 * sides; --side is the operator's word when a side cannot be asked. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "cli/cli.h"
#include "common/common.h"
#include "vmm/vm.h"
#include "vmm/vmstream.h"

static void migrate_usage(FILE *f)
{
    fprintf(f,
            "usage: accmig migrate --vm CONTROL --to tcp:HOST:PORT|unix:PATH [options]\n"
            "  Live-migrate the guest of the mini-VMM whose control socket is CONTROL to\n"
            "  the mini-VMM waiting with --incoming on the endpoint.\n"
            "  --downtime-ms N   downtime goal that ends precopy (default %d)\n"
            "  --max-rounds N    precopy rounds at most (default %d)\n"
            "  --timeout-ms N    give up when the peer is silent that long (default: the VMM's)\n"
            "  --channels N      RAM pages over N connections of their own, one thread each\n"
            "                    (multifd; 1..16; default: on the migration connection)\n"
            "  --json            print the migration report as one JSON object\n"
            "usage: accmig migrate --resolve [--vm CONTROL] [--peer DEST-CONTROL] [--side S]\n"
            "Exit status: 0 migrated, 1 the migration failed (the guest keeps running at\n"
            "the source), 2 usage error or the VMM did not answer, 3 the handover is in\n"
            "doubt: the guest is paused at the source, neither side runs it until\n"
            "  accmig migrate --resolve --vm CONTROL --peer DEST-CONTROL [--side S]\n"
            "asks the destination (or takes --side source|destination, the operator's word\n"
            "when a side cannot be asked; kill an unreachable side before naming the other)\n"
            "and tells both. --resolve exits 0 settled, 3 still in doubt, 2 usage.\n",
            VM_DEFAULT_DOWNTIME_MS, VM_DEFAULT_MAX_ROUNDS);
}

static int64_t mj_int(json_object *o, const char *k)
{
    json_object *v;
    return json_object_object_get_ex(o, k, &v) ? json_object_get_int64(v) : 0;
}

static double mj_ms(json_object *o, const char *k)
{
    return (double)mj_int(o, k) / 1e3;
}

/* The report as a few lines (vm_mig_report_json names the fields). */
static void migrate_print_text(json_object *m, bool ok)
{
    json_object *v;

    if (!ok && json_object_object_get_ex(m, "in_doubt", &v) && json_object_get_boolean(v)) {
        printf("HANDOVER IN DOUBT: migration to %s: %s\n",
               json_object_get_string(json_object_object_get(m, "to")),
               json_object_object_get_ex(m, "error", &v) ? json_object_get_string(v) : "?");
        printf("the guest is paused at the source and runs nowhere until resolved:\n"
               "  accmig migrate --resolve --vm SOURCE-CONTROL --peer DEST-CONTROL\n");
        return;
    }
    if (!ok) {
        bool back = json_object_object_get_ex(m, "rolled_back", &v) && json_object_get_boolean(v);
        printf("migration to %s failed in phase %s: %s\n",
               json_object_get_string(json_object_object_get(m, "to")),
               json_object_get_string(json_object_object_get(m, "phase")),
               json_object_object_get_ex(m, "error", &v) ? json_object_get_string(v) : "?");
        printf("%s\n", back ? "the guest keeps running at the source, nothing lost"
                            : "the source could NOT resume its guest");
        return;
    }
    printf("migrated to %s in %.1f ms\n", json_object_get_string(json_object_object_get(m, "to")),
           mj_ms(m, "total_us"));
    printf("  precopy: %lld rounds in %.1f ms, %lld RAM bytes on the wire (%s MB/s), %lld pages "
           "with data, %lld zero pages\n",
           (long long)mj_int(m, "precopy_rounds"), mj_ms(m, "precopy_us"),
           (long long)mj_int(m, "ram_bytes"),
           json_object_get_string(json_object_object_get(m, "ram_mb_s")),
           (long long)mj_int(m, "ram_pages"), (long long)mj_int(m, "zero_pages"));
    printf("  device state: %lld bytes; stop-copy RAM: %lld pages\n",
           (long long)mj_int(m, "device_state_bytes"), (long long)mj_int(m, "last_pages"));
    printf("  downtime: %.2f ms (estimate %.2f ms)\n", mj_ms(m, "downtime_us"),
           mj_ms(m, "expected_downtime_us"));
    printf("    source: vCPU pause %.2f, quiesce %.2f, save %.2f, last RAM %.2f, device state "
           "%.2f, END to ack %.2f ms\n",
           mj_ms(m, "pause_us"), mj_ms(m, "quiesce_us"), mj_ms(m, "save_us"),
           mj_ms(m, "final_ram_us"), mj_ms(m, "device_send_us"), mj_ms(m, "end_to_ack_us"));
    if (json_object_object_get_ex(m, "restore_us", &v))
        printf("    destination: restore %.2f, resume %.2f, guest start %.2f ms\n",
               mj_ms(m, "restore_us"), mj_ms(m, "resume_us"), mj_ms(m, "guest_start_us"));
}

/* ---- --resolve ---- */

/* What one side says of the last handover. */
struct mig_side {
    bool reached;
    char state[24], handover[24], role[16], id[24];
};

static void mig_side_ask(const char *ctl, struct mig_side *sd)
{
    char *reply = malloc(VM_CONTROL_REPLY_MAX);
    json_object *j = NULL, *st, *v;

    memset(sd, 0, sizeof(*sd));
    if (!ctl || !reply || vm_control_request(ctl, "status", reply, VM_CONTROL_REPLY_MAX, 10000))
        goto out;
    j = json_tokener_parse(reply);
    if (!j || !json_object_object_get_ex(j, "status", &st))
        goto out;
    sd->reached = true;
#define MIG_SIDE_STR(k, f)                                                                  \
    if (json_object_object_get_ex(st, k, &v))                                              \
        snprintf(sd->f, sizeof(sd->f), "%s", json_object_get_string(v));
    MIG_SIDE_STR("state", state)
    MIG_SIDE_STR("handover", handover)
    MIG_SIDE_STR("handover_role", role)
    MIG_SIDE_STR("migration_id", id)
#undef MIG_SIDE_STR
out:
    json_object_put(j);
    free(reply);
}

/* Tells one side which runs the guest; 0 or -1 (message printed). */
static int mig_side_tell(const char *who, const char *ctl, const char *side)
{
    char line[64], *reply = malloc(VM_CONTROL_REPLY_MAX);
    json_object *j = NULL, *v;
    int ret = -1;

    snprintf(line, sizeof(line), "resolve %s", side);
    if (!reply)
        return -1;
    if (vm_control_request(ctl, line, reply, VM_CONTROL_REPLY_MAX, 30000) == 0 &&
        (j = json_tokener_parse(reply)) && json_object_object_get_ex(j, "ok", &v)) {
        if (json_object_get_boolean(v))
            ret = 0;
        else if (json_object_object_get_ex(j, "error", &v))
            fprintf(stderr, "accmig migrate: the %s refused: %s\n", who, json_object_get_string(v));
    } else {
        fprintf(stderr, "accmig migrate: the %s at %s did not answer\n", who, ctl);
    }
    json_object_put(j);
    free(reply);
    return ret;
}

/* The decision, from what the two sides say (docs/vm.md, "Resolving"). */
static int migrate_resolve(const char *src_ctl, const char *dst_ctl, const char *side, bool json)
{
    struct mig_side s, d;
    const char *why = "the operator said so";

    mig_side_ask(src_ctl, &s);
    mig_side_ask(dst_ctl, &d);
    if (!side) {
        bool d_here = d.reached && strcmp(d.role, "destination") == 0 &&
                      strcmp(d.handover, "committed") == 0;

        if (d_here && s.reached && s.id[0] && strcmp(s.id, d.id) != 0) {
            fprintf(stderr, "accmig migrate: the destination ran migration %s, the source sent "
                            "%s: not the same handover; say --side\n", d.id, s.id);
            return 3;
        }
        if (d_here) {
            side = "destination";
            why = "the destination received the commit and runs the guest";
        } else if (d.reached && strcmp(d.handover, "in-doubt") == 0 && !s.reached) {
            fprintf(stderr, "accmig migrate: the destination holds the guest in doubt and the "
                            "source cannot be asked; nothing done. If the source is dead, say "
                            "--side destination\n");
            return 3;
        } else if (d.reached) {
            side = "source";
            why = strcmp(d.handover, "in-doubt") == 0
                      ? "the destination never received the commit (it holds the guest, not running)"
                      : "the destination does not hold the guest";
        } else if (s.reached && strcmp(s.state, "in-doubt") != 0) {
            side = strcmp(s.state, "migrated") == 0 ? "destination" : "source";
            why = "the source is not in doubt";
        } else {
            fprintf(stderr, "accmig migrate: the destination cannot be asked%s; nothing done. If it "
                            "is dead, say --side source (kill it first if it may only be frozen)\n",
                    dst_ctl ? "" : " (no --peer)");
            return 3;
        }
    }
    /* A side that took part in no handover has nothing to be told. */
    s.reached = s.reached && s.handover[0] && strcmp(s.handover, "none") != 0;
    d.reached = d.reached && d.handover[0] && strcmp(d.handover, "none") != 0;
    /* Never two at once: the side that must not run is told first. */
    if (strcmp(side, "source") == 0) {
        if (dst_ctl && d.reached && mig_side_tell("destination", dst_ctl, "source") != 0)
            return 3;
        if (src_ctl && s.reached && mig_side_tell("source", src_ctl, "source") != 0)
            return 3;
    } else {
        if (src_ctl && s.reached && mig_side_tell("source", src_ctl, "destination") != 0)
            return 3;
        if (dst_ctl && d.reached && mig_side_tell("destination", dst_ctl, "destination") != 0)
            return 3;
    }
    if (json)
        printf("{\"resolved\":true,\"runs_on\":\"%s\",\"why\":\"%s\",\"source_reached\":%s,"
               "\"destination_reached\":%s}\n", side, why, s.reached ? "true" : "false",
               d.reached ? "true" : "false");
    else
        printf("resolved: the guest runs on the %s (%s)\n", side, why);
    return 0;
}

int cli_migrate(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"vm", required_argument, NULL, 'v'},
        {"to", required_argument, NULL, 't'},
        {"downtime-ms", required_argument, NULL, 'd'},
        {"max-rounds", required_argument, NULL, 'r'},
        {"timeout-ms", required_argument, NULL, 'T'},
        {"channels", required_argument, NULL, 'c'},
        {"json", no_argument, NULL, 'j'},
        {"resolve", no_argument, NULL, 'R'},
        {"peer", required_argument, NULL, 'p'},
        {"side", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *ctl = NULL, *to = NULL, *peer = NULL, *side = NULL;
    bool resolve = false;
    char line[VM_CONTROL_LINE_MAX], opt[64], *reply;
    uint64_t downtime = 0, rounds = 0, timeout = 0, channels = 0;
    json_object *j, *m, *v;
    bool json = false, ok;
    size_t len;
    int c, ret;

    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        uint64_t *num = NULL;
        const char *name = "";

        switch (c) {
        case 'v': ctl = optarg; break;
        case 't': to = optarg; break;
        case 'd': num = &downtime; name = "--downtime-ms"; break;
        case 'r': num = &rounds; name = "--max-rounds"; break;
        case 'T': num = &timeout; name = "--timeout-ms"; break;
        case 'c': num = &channels; name = "--channels"; break;
        case 'j': json = true; break;
        case 'R': resolve = true; break;
        case 'p': peer = optarg; break;
        case 's': side = optarg; break;
        case 'h': migrate_usage(stdout); return 0;
        default:
            fprintf(stderr, "accmig migrate: unknown or incomplete option '%s'\n",
                    argv[optind - 1]);
            migrate_usage(stderr);
            return 2;
        }
        if (num && (am_parse_u64(optarg, INT32_MAX, num) != 0 || *num == 0)) {
            fprintf(stderr, "accmig migrate: %s wants a number in 1..%d, not '%s'\n",
                    name, INT32_MAX, optarg);
            return 2;
        }
    }
    if (resolve) {
        if (optind < argc || to || (!ctl && !peer) ||
            (side && strcmp(side, "source") != 0 && strcmp(side, "destination") != 0)) {
            fprintf(stderr, "accmig migrate: --resolve takes --vm SOURCE and/or --peer DEST and "
                            "optionally --side source|destination\n");
            return 2;
        }
        return migrate_resolve(ctl, peer, side, json);
    }
    if (optind < argc || !ctl || !to || strchr(to, ' ') || strchr(to, '\n')) {
        fprintf(stderr, "accmig migrate: --vm CONTROL and --to ENDPOINT are required%s\n",
                optind < argc ? " (and nothing else)" : "");
        migrate_usage(stderr);
        return 2;
    }
    len = (size_t)snprintf(line, sizeof(line), "migrate %s", to);
    if (downtime) {
        snprintf(opt, sizeof(opt), " downtime_ms=%llu", (unsigned long long)downtime);
        len += (size_t)snprintf(line + len, sizeof(line) > len ? sizeof(line) - len : 0, "%s", opt);
    }
    if (rounds) {
        snprintf(opt, sizeof(opt), " max_rounds=%llu", (unsigned long long)rounds);
        len += (size_t)snprintf(line + len, sizeof(line) > len ? sizeof(line) - len : 0, "%s", opt);
    }
    if (timeout) {
        snprintf(opt, sizeof(opt), " timeout_ms=%llu", (unsigned long long)timeout);
        len += (size_t)snprintf(line + len, sizeof(line) > len ? sizeof(line) - len : 0, "%s", opt);
    }
    if (channels > VMSTREAM_CHANNELS_MAX) {
        fprintf(stderr, "accmig migrate: --channels wants 1..%d, not %llu\n",
                VMSTREAM_CHANNELS_MAX, (unsigned long long)channels);
        return 2;
    }
    if (channels) {
        snprintf(opt, sizeof(opt), " channels=%llu", (unsigned long long)channels);
        len += (size_t)snprintf(line + len, sizeof(line) > len ? sizeof(line) - len : 0, "%s", opt);
    }
    if (len >= sizeof(line)) {
        fprintf(stderr, "accmig migrate: the endpoint is too long\n");
        return 2;
    }
    reply = malloc(VM_CONTROL_REPLY_MAX);
    if (!reply)
        return 2;
    /* A migration takes as long as it takes; the VMM bounds every wait. */
    ret = vm_control_request(ctl, line, reply, VM_CONTROL_REPLY_MAX, -1);
    if (ret) {
        fprintf(stderr, "accmig migrate: no answer from the VMM at %s: %s\n", ctl, strerror(-ret));
        free(reply);
        return 2;
    }
    j = json_tokener_parse(reply);
    if (!j || !json_object_object_get_ex(j, "ok", &v)) {
        fprintf(stderr, "accmig migrate: the VMM answered something else: %.200s\n", reply);
        json_object_put(j);
        free(reply);
        return 2;
    }
    free(reply);
    ok = json_object_get_boolean(v);
    if (!json_object_object_get_ex(j, "migration", &m)) {
        /* refused before it started (busy, no guest, bad endpoint) */
        json_object_object_get_ex(j, "error", &v);
        fprintf(stderr, "accmig migrate: %s\n", v ? json_object_get_string(v) : "refused");
        json_object_put(j);
        return 2;
    }
    if (json)
        printf("%s\n", json_object_to_json_string_ext(m, JSON_C_TO_STRING_PLAIN));
    else
        migrate_print_text(m, ok);
    ret = ok ? 0 : json_object_object_get_ex(m, "in_doubt", &v) && json_object_get_boolean(v) ? 3 : 1;
    if (ret == 3)
        fprintf(stderr, "accmig migrate: handover in doubt; the guest is paused at the source "
                        "(accmig migrate --resolve)\n");
    json_object_put(j);
    return ret;
}
