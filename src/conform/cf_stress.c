/* conform/stress: a bounded random sequence of valid and invalid messages
 * from one seed (splitmix64), so a failure is replayed with the same
 * --seed. A small model predicts what it can (DMA maps: EEXIST or success
 * in a window only this group uses; migration: the path rules; info
 * queries always succeed) and everything else must at least be answered;
 * mutated messages (bytes flipped, cut short) must never kill the server.
 * One check per batch of 50 operations, naming the first violation. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"
#include "conform/cf_int.h"

#define BATCH 50u
#define WINDOW_PAGES 64u
#define DEFAULT_OPS 300u

struct model {
    uint64_t used[WINDOW_PAGES / 64]; /* pages mapped in the window */
    struct {
        uint32_t first, n;
    } maps[WINDOW_PAGES];
    unsigned nmaps;
    uint32_t state;
};

struct stress {
    struct cf_ctx *x;
    struct model m;
    uint64_t rng;
    int fd;
    unsigned bad;
    char why[300];
};

static uint64_t rnd(struct stress *s, uint64_t n)
{
    return n ? cf_splitmix(&s->rng) % n : 0;
}

static void violation(struct stress *s, unsigned op, const char *what, const struct cf_res *res)
{
    char b[200];
    if (s->bad++)
        return;
    snprintf(s->why, sizeof(s->why), "op %u: %s: %s", op, what,
             res ? cf_res_str(res, b, sizeof(b)) : "");
}

static void model_reset(struct model *m)
{
    memset(m, 0, sizeof(*m));
    m->state = CF_ST_RUNNING;
}

static bool pages_free(const struct model *m, uint32_t first, uint32_t n)
{
    for (uint32_t p = first; p < first + n; p++)
        if (m->used[p / 64] >> (p % 64) & 1)
            return false;
    return true;
}

static void pages_set(struct model *m, uint32_t first, uint32_t n, bool on)
{
    for (uint32_t p = first; p < first + n; p++) {
        if (on)
            m->used[p / 64] |= 1ull << (p % 64);
        else
            m->used[p / 64] &= ~(1ull << (p % 64));
    }
}

/* After the server closed on us: a new session is a reset device. */
static void resync(struct stress *s)
{
    if (s->x->conn.fd < 0) {
        cf_session(s->x);
        model_reset(&s->m);
    }
}

static void op_map(struct stress *s, unsigned op)
{
    uint32_t first = (uint32_t)rnd(s, WINDOW_PAGES), n = 1 + (uint32_t)rnd(s, 4);
    struct cf_res res;

    if (first + n > WINDOW_PAGES)
        n = WINDOW_PAGES - first;
    cf_dma_map(s->x, s->x->dma_base + 0x40000000ull + first * 4096ull, n * 4096ull, s->fd,
               first * 4096ull, VFU_DMA_FLAG_READ | VFU_DMA_FLAG_WRITE, &res);
    if (pages_free(&s->m, first, n)) {
        if (res.out != CF_OK)
            violation(s, op, "DMA_MAP of free pages", &res);
        else {
            pages_set(&s->m, first, n, true);
            s->m.maps[s->m.nmaps].first = first;
            s->m.maps[s->m.nmaps++].n = n;
        }
    } else if (!(res.out == CF_ERR && res.err == EEXIST)) {
        violation(s, op, "DMA_MAP over a mapping (EEXIST)", &res);
    }
    cf_res_free(&res);
}

static void op_unmap(struct stress *s, unsigned op)
{
    struct cf_res res;
    unsigned i;

    if (!s->m.nmaps)
        return;
    i = (unsigned)rnd(s, s->m.nmaps);
    cf_dma_unmap(s->x, s->x->dma_base + 0x40000000ull + s->m.maps[i].first * 4096ull,
                 s->m.maps[i].n * 4096ull, 0, &res);
    if (res.out != CF_OK)
        violation(s, op, "DMA_UNMAP of exactly a previous mapping", &res);
    pages_set(&s->m, s->m.maps[i].first, s->m.maps[i].n, false);
    s->m.maps[i] = s->m.maps[--s->m.nmaps];
    cf_res_free(&res);
}

static void op_mig(struct stress *s, unsigned op)
{
    struct cf_ctx *x = s->x;
    uint32_t target = (uint32_t)rnd(s, CF_ST_COUNT), got = 99, now = 99;
    unsigned next;
    bool legal = conform_fsm_next_step(x->dev.mig_flags, s->m.state, target, &next) == 0;
    struct cf_res res;

    cf_mig_set(x, target, &got, &res);
    /* Leaving RESUMING needs a valid stream: no prediction there. */
    if (s->m.state != CF_ST_RESUMING) {
        if (legal && (res.out != CF_OK || got != target))
            violation(s, op, "a legal combined transition", &res);
        if (!legal && res.out == CF_OK)
            violation(s, op, "an illegal transition was accepted", &res);
    }
    cf_res_free(&res);
    if (cf_mig_get(x, &now) == 0)
        s->m.state = now;
    if (s->m.state == CF_ST_ERROR || s->m.state == CF_ST_RESUMING) {
        cf_reset(x);
        s->m.state = cf_mig_get(x, &now) == 0 ? now : CF_ST_RUNNING;
    }
}

static void op_mig_read(struct stress *s, unsigned op)
{
    struct vfu_mig_data rq = {.argsz = 8 + 256, .size = 256};
    bool saving = s->m.state == CF_ST_STOP_COPY || s->m.state == CF_ST_PRE_COPY ||
                  s->m.state == CF_ST_PRE_COPY_P2P;
    struct cf_res res;

    cf_call(s->x, VFU_CMD_MIG_DATA_READ, &rq, sizeof(rq), NULL, 0, &res);
    if (saving && res.out != CF_OK)
        violation(s, op, "MIG_DATA_READ in a saving state", &res);
    if (!saving && res.out == CF_OK)
        violation(s, op, "MIG_DATA_READ outside the saving states", &res);
    if (res.out == CF_OK && res.rep.len > rq.argsz)
        violation(s, op, "MIG_DATA_READ reply beyond argsz", &res);
    cf_res_free(&res);
}

static void op_unmap_quiet(struct stress *s)
{
    struct cf_res res;
    unsigned i = --s->m.nmaps;
    cf_dma_unmap(s->x, s->x->dma_base + 0x40000000ull + s->m.maps[i].first * 4096ull,
                 s->m.maps[i].n * 4096ull, 0, &res);
    pages_set(&s->m, s->m.maps[i].first, s->m.maps[i].n, false);
    cf_res_free(&res);
}

/* A valid request of a random kind, then bytes flipped and/or cut. */
static void op_mutant(struct stress *s, unsigned op)
{
    struct cf_ctx *x = s->x;
    uint8_t b[48] = {0};
    size_t len;
    uint16_t cmd;
    struct cf_res res;

    switch (rnd(s, 6)) {
    case 0: {
        struct vfu_region_info ri = {.argsz = 32, .index = (uint32_t)rnd(s, 10)};
        memcpy(b, &ri, sizeof(ri));
        len = sizeof(ri);
        cmd = VFU_CMD_DEVICE_GET_REGION_INFO;
        break;
    }
    case 1: {
        struct vfu_region_access a = {.offset = rnd(s, 256), .region = VFU_REGION_CONFIG,
                                      .count = 4};
        memcpy(b, &a, sizeof(a));
        len = sizeof(a);
        cmd = VFU_CMD_REGION_READ;
        break;
    }
    case 2: {
        struct vfu_feature f = {.argsz = 16, .flags = VFU_FEATURE_GET | CF_FEAT_MIG_STATE};
        memcpy(b, &f, sizeof(f));
        len = sizeof(f);
        cmd = VFU_CMD_DEVICE_FEATURE;
        break;
    }
    case 3: {
        struct vfu_irq_set is = {.argsz = 20,
                                 .flags = VFU_IRQ_SET_DATA_NONE | VFU_IRQ_SET_ACTION_TRIGGER,
                                 .index = 1, .count = 0};
        memcpy(b, &is, sizeof(is));
        len = sizeof(is);
        cmd = VFU_CMD_DEVICE_SET_IRQS;
        break;
    }
    case 4: {
        struct vfu_dma_unmap u = {.argsz = 24, .addr = x->dma_base + 0x80000000ull, .size = 4096};
        memcpy(b, &u, sizeof(u));
        len = sizeof(u);
        cmd = VFU_CMD_DMA_UNMAP;
        break;
    }
    default: {
        struct vfu_mig_data d = {.argsz = 8 + 64, .size = 64};
        memcpy(b, &d, sizeof(d));
        len = sizeof(d);
        cmd = VFU_CMD_MIG_DATA_READ;
        break;
    }
    }
    for (unsigned k = 1 + (unsigned)rnd(s, 3); k; k--)
        b[rnd(s, len)] ^= (uint8_t)(1u << rnd(s, 8));
    if (rnd(s, 3) == 0)
        len = rnd(s, len);
    cf_call(x, cmd, b, len, NULL, 0, &res);
    if (res.out == CF_TIMEOUT || res.out == CF_BAD || res.out == CF_NOSEND)
        violation(s, op, "a mutated request was not answered properly", &res);
    if (res.out == CF_OK && cmd == VFU_CMD_DMA_UNMAP) {
        /* Its range may have covered the window: start the window over. */
        while (s->m.nmaps)
            op_unmap_quiet(s);
    }
    cf_res_free(&res);
    if (x->conn.fd < 0 || cmd == VFU_CMD_DEVICE_FEATURE || cmd == VFU_CMD_DMA_UNMAP) {
        /* The mutant may have changed state we model: ask again. */
        uint32_t now;
        resync(s);
        if (cf_mig_get(x, &now) == 0)
            s->m.state = now;
    }
}

static void op_info(struct stress *s, unsigned op)
{
    struct cf_res res;
    if (rnd(s, 2)) {
        struct vfu_device_info di = {.argsz = 16};
        cf_call(s->x, VFU_CMD_DEVICE_GET_INFO, &di, sizeof(di), NULL, 0, &res);
    } else {
        struct vfu_region_access a = {.offset = 4 * rnd(s, 16), .region = VFU_REGION_CONFIG,
                                      .count = 4};
        cf_call(s->x, VFU_CMD_REGION_READ, &a, sizeof(a), NULL, 0, &res);
    }
    if (res.out != CF_OK)
        violation(s, op, "a valid info query or config read", &res);
    cf_res_free(&res);
}

void cf_group_stress(struct cf_ctx *x)
{
    struct stress s = {.x = x, .rng = x->opts->seed};
    unsigned ops = x->opts->stress_ops ? x->opts->stress_ops : DEFAULT_OPS;
    uint64_t until = x->opts->stress_seconds
                         ? am_now_ns() + (uint64_t)x->opts->stress_seconds * 1000000000ull
                         : 0;
    unsigned op = 0, batch_start = 0;
    char name[64];
    bool mig = x->dev.mig && x->dev.feat_state && (x->dev.info.flags & VFU_DEVICE_FLAGS_RESET);

    s.fd = cf_memfd(x, WINDOW_PAGES * 4096);
    if (s.fd < 0) {
        cf_check(x, "all", CF_SKIP, "memfd_create failed");
        return;
    }
    model_reset(&s.m);
    for (;; op++) {
        if (until ? am_now_ns() >= until : op >= ops)
            break;
        if (x->server_gone)
            break;
        resync(&s);
        switch (rnd(&s, 8)) {
        case 0: op_map(&s, op); break;
        case 1: op_unmap(&s, op); break;
        case 2: if (mig) op_mig(&s, op); else op_info(&s, op); break;
        case 3: if (mig) op_mig_read(&s, op); else op_info(&s, op); break;
        case 4:
        case 5: op_mutant(&s, op); break;
        default: op_info(&s, op); break;
        }
        if ((op + 1) % BATCH == 0) {
            if (!cf_alive(x, "alive"))
                violation(&s, op, "the server is not there any more", NULL);
            snprintf(name, sizeof(name), "ops-%04u-%04u", batch_start, op);
            cf_check(x, name, s.bad ? CF_FAIL : CF_PASS, "%s (seed %llu)",
                     s.bad ? s.why : "every prediction held, every message answered",
                     (unsigned long long)x->opts->seed);
            s.bad = 0;
            batch_start = op + 1;
        }
    }
    if (op > batch_start) {
        snprintf(name, sizeof(name), "ops-%04u-%04u", batch_start, op - 1);
        cf_check(x, name, s.bad ? CF_FAIL : CF_PASS, "%s (seed %llu)",
                 s.bad ? s.why : "every prediction held, every message answered",
                 (unsigned long long)x->opts->seed);
    }
    cf_check(x, "summary", CF_PASS, "%u operations from seed %llu (replay: --seed %llu%s)", op,
             (unsigned long long)x->opts->seed, (unsigned long long)x->opts->seed,
             until ? "; a timed run replays its first operations" : "");
    cf_reset(x);
    close(s.fd);
}
