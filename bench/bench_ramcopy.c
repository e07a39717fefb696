/* accmig bench ramcopy: guest RAM migration throughput of vmstream against a
 * raw TCP copy of the same bytes, in the same run, over loopback TCP.
 *
 * Both sides move SIZE bytes from a source memfd (every page holding
 * non-zero data, so nothing travels as a zero run) into a destination memfd
 * (touched beforehand, so neither side pays first-touch faults), and each
 * measurement ends when the sender has heard that the receiver has all of it:
 *   raw       plain write() / read(MSG_WAITALL) loops, then a 1-byte ack, with
 *             1 MiB and with 4 MiB calls (the fastest plain loops here: the
 *             baseline of a round is the better of the two)
 *   vmstream  one precopy round of every page, stop-copy marker, an empty
 *             final round, END, the destination's final answer
 *   final     the same with every page sent after the stop-copy marker, so
 *             the stream CRC32C covers the page data on both sides
 * Connection setup and the handshake are outside the timed part. Each of
 * `rounds` rounds runs all of them back to back, each vmstream mode twice
 * so that it gets as many tries as the raw copy. The throughputs reported
 * are the best of each (the least disturbed runs); the ratios are the median
 * of the per-round ratios (each against that round's best raw copy), which
 * holds up when other work shares the machine. MB = 10^6 bytes.
 * --json prints one object:
 *   {"bench":"ramcopy","size":..,"rounds":..,"raw_mb_s":..,"vmstream_mb_s":..,
 *    "ratio":..,"final_mb_s":..,"ratio_final":..,"wire_bytes":..,"load_threads":..}
 * With --load N, N CPU-bound threads (bench.h) spin from before the first
 * round to after the last, raw copies and vmstream alike.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench.h"
#include "bench_ram.h"
#include "common/common.h"
#include "vmm/net.h"
#include "vmm/vm_ram.h"
#include "vmm/vmstream.h"

#define RC_DEFAULT_SIZE (UINT64_C(256) << 20)
#define RC_MAX_SIZE (UINT64_C(8) << 30)
#define RC_TIMEOUT_MS 30000
#define RC_MAX_ROUNDS 100u

struct rc_opts {
    uint64_t size;
    unsigned rounds;
    int json;
    unsigned load; /* CPU-bound threads beside the run (--load) */
};

enum rc_mode { RC_RAW, RC_VMSTREAM, RC_FINAL };

/* The raw copy's call sizes. */
static const uint64_t rc_raw_chunks[] = {1u << 20, 4u << 20};

struct rc_receiver {
    enum rc_mode mode;
    uint64_t chunk; /* raw: bytes per read call */
    int fd;
    struct vm_ram *ram;
    struct vmstream_profile prof;
    int ret;
    char err[320];
};

static void rc_usage(FILE *f)
{
    fprintf(f,
            "usage: accmig bench ramcopy [options]\n"
            "  vmstream guest RAM transfer vs a raw TCP copy of the same bytes, loopback TCP.\n"
            "  --size BYTES   guest RAM to move (default 256M, K/M/G suffixes, at most 8G)\n"
            "  --rounds N     raw/vmstream alternations, best of each reported (default 5)\n"
            "  --load N       N CPU-bound threads spin for the whole run (0..64, default 0)\n"
            "  --json         one JSON object instead of text\n");
}

static int rc_parse(int argc, char **argv, struct rc_opts *o)
{
    static const struct option longopts[] = {
        {"size", required_argument, NULL, 's'}, {"rounds", required_argument, NULL, 'r'},
        {"json", no_argument, NULL, 'j'},       {"help", no_argument, NULL, 'h'},
        {"load", required_argument, NULL, 'l'}, {NULL, 0, NULL, 0},
    };
    uint64_t v;
    int c;

    *o = (struct rc_opts){.size = RC_DEFAULT_SIZE, .rounds = 5};
    optind = 1;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 's':
            if (am_parse_u64(optarg, RC_MAX_SIZE, &v) != 0 || v == 0 ||
                v % VM_RAM_PAGE_SIZE != 0) {
                fprintf(stderr, "accmig bench ramcopy: --size '%s' must be a multiple of 4096 "
                        "in 4K..8G\n", optarg);
                return 2;
            }
            o->size = v;
            break;
        case 'r':
            if (am_parse_u64(optarg, RC_MAX_ROUNDS, &v) != 0 || v == 0) {
                fprintf(stderr, "accmig bench ramcopy: --rounds '%s' must be 1..100\n", optarg);
                return 2;
            }
            o->rounds = (unsigned)v;
            break;
        case 'j':
            o->json = 1;
            break;
        case 'l':
            if (bench_load_parse("ramcopy", optarg, &o->load))
                return 2;
            break;
        case 'h':
            rc_usage(stdout);
            return 1;
        default:
            rc_usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        rc_usage(stderr);
        return 2;
    }
    return 0;
}

static void *rc_receive(void *arg)
{
    struct rc_receiver *r = arg;
    struct vmstream *s;
    uint8_t ack = 1;

    if (r->mode == RC_RAW) {
        r->ret = 0;
        for (uint64_t off = 0; off < vm_ram_size(r->ram) && r->ret == 0; off += r->chunk)
            r->ret = vm_net_read_full(r->fd, vm_ram_host(r->ram) + off,
                                      AM_MIN(r->chunk, vm_ram_size(r->ram) - off), NULL);
        if (r->ret == 0)
            r->ret = vm_net_write_full(r->fd, &ack, 1);
        if (r->ret != 0)
            snprintf(r->err, sizeof(r->err), "raw receive: %s", strerror(-r->ret));
        return NULL;
    }
    r->ret = vmstream_create(r->fd, VMSTREAM_DEST, RC_TIMEOUT_MS, &s);
    if (r->ret != 0) {
        snprintf(r->err, sizeof(r->err), "vmstream_create: %s", strerror(-r->ret));
        return NULL;
    }
    r->ret = vmstream_handshake(s, &r->prof, NULL);
    if (r->ret == 0)
        r->ret = vmstream_recv_loop(s, r->ram, NULL);
    if (r->ret != 0)
        snprintf(r->err, sizeof(r->err), "destination: %s", vmstream_error(s));
    vmstream_destroy(s);
    return NULL;
}

static int rc_connect(int fds[2])
{
    struct vm_net_endpoint ep;
    uint16_t port;
    int lfd, ret;

    ret = vm_net_endpoint_parse("tcp:127.0.0.1:0", &ep, NULL, 0);
    if (ret == 0)
        ret = vm_net_listen(&ep, &lfd);
    if (ret != 0)
        return ret;
    ret = vm_net_listen_port(lfd, &port);
    ep.port = port;
    if (ret == 0)
        ret = vm_net_connect(&ep, RC_TIMEOUT_MS, &fds[0]);
    if (ret == 0) {
        ret = vm_net_accept(lfd, RC_TIMEOUT_MS, &fds[1]);
        if (ret != 0)
            close(fds[0]);
    }
    close(lfd);
    return ret;
}

/* The sender's part of one measurement; returns the timed nanoseconds
 * through *ns. */
static int rc_send(enum rc_mode mode, uint64_t chunk, int fd, struct vm_ram *ram, const uint64_t *all,
                   const uint64_t *none, const struct vmstream_profile *prof, uint64_t *ns,
                   uint64_t *wire, char *err, size_t errlen)
{
    struct vmstream_stats st;
    struct vmstream *s;
    uint64_t t0;
    uint8_t ack;
    int ret = 0;

    if (mode == RC_RAW) {
        t0 = am_now_ns();
        for (uint64_t off = 0; off < vm_ram_size(ram) && ret == 0; off += chunk)
            ret = vm_net_write_full(fd, vm_ram_host(ram) + off,
                                    AM_MIN(chunk, vm_ram_size(ram) - off));
        if (ret == 0)
            ret = vm_net_read_full(fd, &ack, 1, NULL);
        *ns = am_now_ns() - t0;
        if (ret != 0)
            snprintf(err, errlen, "raw send: %s", strerror(-ret));
        return ret;
    }
    ret = vmstream_create(fd, VMSTREAM_SOURCE, RC_TIMEOUT_MS, &s);
    if (ret != 0) {
        snprintf(err, errlen, "vmstream_create: %s", strerror(-ret));
        return ret;
    }
    ret = vmstream_handshake(s, prof, NULL);
    t0 = am_now_ns();
    if (ret == 0 && mode == RC_VMSTREAM)
        ret = vmstream_send_ram_round(s, ram, all, NULL);
    if (ret == 0)
        ret = vmstream_send_stop_copy(s);
    if (ret == 0)
        ret = vmstream_send_ram_round(s, ram, mode == RC_FINAL ? all : none, NULL);
    if (ret == 0)
        ret = vmstream_send_end(s);
    *ns = am_now_ns() - t0;
    vmstream_stats_get(s, &st);
    *wire = st.bytes;
    if (ret != 0)
        snprintf(err, errlen, "source: %s", vmstream_error(s));
    vmstream_destroy(s);
    return ret;
}

/* One measurement over a fresh connection: MB/s, or a negative errno. */
static int rc_measure(enum rc_mode mode, uint64_t chunk, struct vm_ram *src, struct vm_ram *dst,
                      const uint64_t *all, const uint64_t *none, double *mb_s, uint64_t *wire)
{
    struct vmstream_profile prof = {.vendor_id = 0x19e5, .device_id = 0xa251, .revision = 0x21,
                                    .qp_count = 1, .ram_size = vm_ram_size(src),
                                    .page_size = VM_RAM_PAGE_SIZE};
    struct rc_receiver r = {.mode = mode, .chunk = chunk, .ram = dst, .prof = prof};
    char err[320] = "";
    uint64_t ns = 0;
    pthread_t t;
    int fds[2], ret;

    ret = rc_connect(fds);
    if (ret != 0) {
        fprintf(stderr, "accmig bench ramcopy: loopback connection: %s\n", strerror(-ret));
        return ret;
    }
    r.fd = fds[1];
    ret = pthread_create(&t, NULL, rc_receive, &r);
    if (ret != 0) {
        close(fds[0]);
        close(fds[1]);
        return -ret;
    }
    ret = rc_send(mode, chunk, fds[0], src, all, none, &prof, &ns, wire, err, sizeof(err));
    if (ret != 0)
        vm_net_abort(fds[0]);
    pthread_join(t, NULL);
    close(fds[0]);
    close(fds[1]);
    if (ret != 0 || r.ret != 0) {
        fprintf(stderr, "accmig bench ramcopy: %s%s%s\n", err, err[0] && r.err[0] ? "; " : "",
                r.err);
        return ret != 0 ? ret : r.ret;
    }
    *mb_s = (double)vm_ram_size(src) / ((double)ns / 1e9) / 1e6;
    return 0;
}

static void rc_fill(struct vm_ram *ram)
{
    uint64_t *w = (uint64_t *)(void *)vm_ram_host(ram), x = 0x2545f4914f6cdd1dull;

    for (uint64_t i = 0; i < vm_ram_size(ram) / 8; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        w[i] = x | 1; /* never a zero page */
    }
}

int bench_ram_copy_main(int argc, char **argv)
{
    struct vm_ram *src = NULL, *dst = NULL;
    uint64_t *all = NULL, *none = NULL, wire = 0, w = 0;
    double best[3] = {0, 0, 0}, ratio[2][RC_MAX_ROUNDS], v, round_raw;
    struct rc_opts o;
    struct bench_load *load = NULL;
    int ret;

    ret = rc_parse(argc, argv, &o);
    if (ret != 0)
        return ret == 1 ? 0 : ret;
    if (bench_load_create("ramcopy", o.load, &load) != 0)
        return 2;
    if (vm_ram_create(o.size, &src) != 0 || vm_ram_create(o.size, &dst) != 0) {
        fprintf(stderr, "accmig bench ramcopy: cannot create %llu bytes of RAM twice\n",
                (unsigned long long)o.size);
        ret = 2;
        goto out;
    }
    all = calloc(vm_ram_bitmap_words(src), sizeof(uint64_t));
    none = calloc(vm_ram_bitmap_words(src), sizeof(uint64_t));
    if (all == NULL || none == NULL) {
        ret = 2;
        goto out;
    }
    vm_ram_dirty_set_all(src, all);
    rc_fill(src);
    memset(vm_ram_host(dst), 0xa5, o.size);
    for (unsigned r = 0; r < o.rounds; r++) {
        round_raw = 0;
        for (size_t c = 0; c < AM_ARRAY_SIZE(rc_raw_chunks); c++) {
            uint64_t chunk = AM_MIN(rc_raw_chunks[c], o.size);

            if (rc_measure(RC_RAW, chunk, src, dst, all, none, &v, &w) != 0) {
                ret = 1;
                goto out;
            }
            round_raw = AM_MAX(round_raw, v);
        }
        best[RC_RAW] = AM_MAX(best[RC_RAW], round_raw);
        for (int m = RC_VMSTREAM; m <= RC_FINAL; m++) {
            double round_best = 0;

            for (size_t k = 0; k < AM_ARRAY_SIZE(rc_raw_chunks); k++) {
                if (rc_measure((enum rc_mode)m, 0, src, dst, all, none, &v, &w) != 0) {
                    ret = 1;
                    goto out;
                }
                round_best = AM_MAX(round_best, v);
            }
            best[m] = AM_MAX(best[m], round_best);
            ratio[m - RC_VMSTREAM][r] = round_best / round_raw;
            if (m == RC_VMSTREAM)
                wire = w;
        }
        /* Each measurement must have delivered every byte. */
        if (memcmp(vm_ram_host(src), vm_ram_host(dst), o.size) != 0) {
            fprintf(stderr, "accmig bench ramcopy: destination RAM differs from the source\n");
            ret = 1;
            goto out;
        }
    }
    ratio[0][0] = bench_median(ratio[0], o.rounds);
    ratio[1][0] = bench_median(ratio[1], o.rounds);
    if (o.json)
        printf("{\"bench\":\"ramcopy\",\"size\":%llu,\"rounds\":%u,\"raw_mb_s\":%.1f,"
               "\"vmstream_mb_s\":%.1f,\"ratio\":%.3f,\"final_mb_s\":%.1f,\"ratio_final\":%.3f,"
               "\"wire_bytes\":%llu,\"load_threads\":%u}\n",
               (unsigned long long)o.size, o.rounds, best[RC_RAW], best[RC_VMSTREAM],
               ratio[0][0], best[RC_FINAL], ratio[1][0], (unsigned long long)wire, o.load);
    else
        printf("ramcopy %llu bytes over loopback TCP, best of %u rounds (ratio: median of "
               "the rounds):\n"
               "  raw TCP copy          %9.1f MB/s\n"
               "  vmstream precopy      %9.1f MB/s  ratio %.3f\n"
               "  vmstream final (CRC)  %9.1f MB/s  ratio %.3f\n"
               "  vmstream wire bytes   %llu (%.4f%% framing)\n",
               (unsigned long long)o.size, o.rounds, best[RC_RAW], best[RC_VMSTREAM],
               ratio[0][0], best[RC_FINAL], ratio[1][0], (unsigned long long)wire, 100.0 * ((double)wire - (double)o.size) / (double)o.size);
    ret = 0;
out:
    bench_load_destroy(load);
    free(all);
    free(none);
    vm_ram_destroy(src);
    vm_ram_destroy(dst);
    return ret;
}
