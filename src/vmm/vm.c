/* vmm/vm: the mini-VMM and its live migration (vm.h). */
#include "vmm/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/common.h"
#include "qm/qm_hw.h"
#include "vfu/client.h"
#include "vmm/ledger.h"
#include "vmm/migrate_core.h"
#include "vmm/net.h"
#include "vmm/vm_ram.h"

#define VM_MB_BUDGET_NS (UINT64_C(1000) * 1000000u) /* a mailbox command's answer */
#define VM_ACCEPT_SLICE_MS 200     /* accept waits in slices so vm_abort is seen */
#define VM_EPILOGUE_TIMEOUT_MS 2000
/* Downtime that does not depend on the dirty RAM left: vCPU pause, device
 * quiesce/save/restore/resume and a few round trips (measured about 2-6 ms
 * on loopback; the estimate errs on the safe side). */
#define VM_STOP_OVERHEAD_US 8000u
/* Precopy gives up converging when this many rounds in a row did not leave
 * fewer dirty pages than the best round so far. */
#define VM_STALL_ROUNDS 4u
/* Dirty pages not worth another round (a stop-copy sends them in well
 * under a millisecond). */
#define VM_FEW_PAGES 64u

/* The destination's epilogue after the ack (docs/vm.md). Little-endian. */
#define VM_EPILOGUE_MAGIC "ACCMIGVE"
#define VM_EPILOGUE_VERSION 1u
struct vm_epilogue {
    char magic[8];
    uint32_t version;
    uint32_t len;              /* bytes of this record */
    uint64_t restore_ns;       /* RESUMING -> STOP */
    uint64_t resume_ns;        /* STOP -> RUNNING */
    uint64_t guest_ns;         /* workload_attach + vCPUs started */
    uint64_t stop_copy_to_ack_ns;
    uint64_t reserved[2];      /* written 0 */
} __attribute__((packed));
_Static_assert(sizeof(struct vm_epilogue) == 64, "struct vm_epilogue is 64 bytes on the wire");

/* Fault injection points (vm.h): the old hold phases and the handover's. */
static const char *const vm_hold_phases[] = {"precopy",    "stop-copy", "incoming", "src-ready",
                                             "src-commit", "dst-end",   "dst-ready", "dst-commit"};
static const char *const vm_fault_actions[] = {"hold", "kill", "stop", "cut-send", "cut-recv"};

/* What a failed migration's source undoes, in this order: logging off,
 * device back to RUNNING, vCPUs on. */
struct vm_undo {
    bool logging;
    bool device_moved;
    bool paused;
};

struct vm {
    char attach[VM_NET_PATH_MAX];
    struct workload_config wl;
    int timeout_ms;
    struct vm_ram *ram;
    struct vfu_client *c;
    struct vf_io io;
    struct vmstream_profile profile;
    enum vm_doorbells doorbells; /* set at create, immutable */
    int dev_fd; /* the vfio-user socket as found at create (watched only), -1; immutable */

    /* Protects everything below; cond signals hold releases and aborts.
     * The driving thread changes w and s only under it, so the status and
     * abort paths never see a freed object. */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    enum vm_state state;
    struct workload *w;
    struct vmstream *s;   /* the stream being driven, for vm_abort */
    bool aborted;         /* sticky: every later migration fails at once */
    char hold[VM_PHASE_NAME_MAX];
    char held[VM_PHASE_NAME_MAX];
    bool hold_released;
    char phase[VM_PHASE_NAME_MAX];
    uint64_t round, ram_bytes_sent, dirty_pages, migrations_out;
    /* Fault injection other than hold (vm_fault_set): point and action. */
    char fault_point[VM_PHASE_NAME_MAX];
    char fault_action[VM_PHASE_NAME_MAX];
    bool fault_deaf;  /* a cut-recv fired: nothing more is read, even if buffered */
    int mig_fd; /* the migration's connection, -1 when none (for the cut faults) */
    bool dev_gone; /* the device server hung up (vm_device_gone) */

    /* The last handover (docs/vm.md): where it ended, which side this was,
     * its id; in doubt, what a source still has to undo when told to run
     * the guest (a destination in doubt holds its workload attached, not
     * started, and its device in STOP). */
    enum vm_handover ho;
    bool ho_source;
    uint64_t ho_id;
    struct vm_undo doubt_undo;

    /* The results file (vm_config.results) and what serialises its
     * writers (the vCPU threads); -1 when none. */
    int results_fd;
    pthread_mutex_t results_lock;
    uint32_t miscount; /* test-only: ACCMIG_TEST_GUEST_MISCOUNT (workload_test_miscount) */

    /* Destination timings, written by the finish callback (driving thread). */
    struct vm_epilogue dest;
};

const char *vm_state_name(enum vm_state s)
{
    static const char *const names[] = {
        [VM_ATTACHED] = "attached", [VM_INCOMING] = "incoming", [VM_RUNNING] = "running",
        [VM_MIGRATING] = "migrating", [VM_FINISHED] = "finished", [VM_MIGRATED] = "migrated",
        [VM_SHUT_DOWN] = "shut-down", [VM_FAILED] = "failed", [VM_IN_DOUBT] = "in-doubt",
    };
    return (unsigned)s < AM_ARRAY_SIZE(names) && names[s] ? names[s] : "unknown";
}

/* A device call's error as a sentence: a timeout means the server did not
 * answer at all (frozen or overloaded), which strerror does not say. */
static const char *vm_dev_strerror(const struct vm *vm, int err, char *buf, size_t len)
{
    if (err == -ETIMEDOUT || (err == -EIO && vfu_client_broken(vm->c) == -ETIMEDOUT))
        snprintf(buf, len, "the device server did not answer within %d ms (frozen?)",
                 vm->timeout_ms);
    else
        snprintf(buf, len, "%s", strerror(-err));
    return buf;
}

static uint64_t us_since(uint64_t t0_ns)
{
    return (am_now_ns() - t0_ns) / 1000u;
}

/* ---- small helpers around the lock ---- */

static void vm_set_phase(struct vm *vm, const char *phase)
{
    pthread_mutex_lock(&vm->lock);
    snprintf(vm->phase, sizeof(vm->phase), "%s", phase);
    pthread_mutex_unlock(&vm->lock);
}

static void vm_set_state(struct vm *vm, enum vm_state st)
{
    pthread_mutex_lock(&vm->lock);
    vm->state = st;
    pthread_mutex_unlock(&vm->lock);
}

static void vm_set_stream(struct vm *vm, struct vmstream *s)
{
    pthread_mutex_lock(&vm->lock);
    vm->s = s;
    if (s && vm->aborted)
        vmstream_abort(s);
    pthread_mutex_unlock(&vm->lock);
}

static bool vm_aborted(struct vm *vm)
{
    pthread_mutex_lock(&vm->lock);
    bool a = vm->aborted;
    pthread_mutex_unlock(&vm->lock);
    return a;
}

static bool vm_dev_is_gone(struct vm *vm)
{
    pthread_mutex_lock(&vm->lock);
    bool g = vm->dev_gone;
    pthread_mutex_unlock(&vm->lock);
    return g;
}

static bool vm_name_known(const char *name, const char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(name, names[i]) == 0)
            return true;
    return false;
}

/* Fault injection: waits here when the hold names this point, or does the
 * fault set for it (once). Returns -ECANCELED when the VM was aborted. */
static int vm_hold_point(struct vm *vm, const char *phase)
{
    char action[VM_PHASE_NAME_MAX] = "";
    int ret, fd;

    pthread_mutex_lock(&vm->lock);
    if (strcmp(vm->fault_point, phase) == 0) {
        snprintf(action, sizeof(action), "%s", vm->fault_action);
        vm->fault_point[0] = '\0'; /* one shot */
        if (strcmp(action, "hold") == 0)
            snprintf(vm->hold, sizeof(vm->hold), "%s", phase);
    }
    fd = vm->mig_fd;
    pthread_mutex_unlock(&vm->lock);
    if (action[0] && strcmp(action, "hold") != 0) {
        am_log(AM_LOG_ERR, "vm", "fault injection at '%s': %s", phase, action);
        if (strcmp(action, "kill") == 0)
            raise(SIGKILL);
        else if (strcmp(action, "stop") == 0)
            raise(SIGSTOP); /* frozen until SIGCONT, then carries on from here */
        else if (fd >= 0)
            shutdown(fd, strcmp(action, "cut-send") == 0 ? SHUT_WR : SHUT_RD);
        if (strcmp(action, "cut-recv") == 0) {
            pthread_mutex_lock(&vm->lock);
            vm->fault_deaf = true;
            pthread_mutex_unlock(&vm->lock);
        }
    }
    pthread_mutex_lock(&vm->lock);
    if (strcmp(vm->hold, phase) == 0) {
        snprintf(vm->held, sizeof(vm->held), "%s", phase);
        vm->hold_released = false;
        am_log(AM_LOG_ERR, "vm", "held at '%s' (fault injection); waiting for 'continue'", phase);
        while (!vm->hold_released && !vm->aborted)
            pthread_cond_wait(&vm->cond, &vm->lock);
        vm->held[0] = '\0';
        vm->hold[0] = '\0'; /* one shot */
    }
    ret = vm->aborted ? -ECANCELED : 0;
    pthread_mutex_unlock(&vm->lock);
    return ret;
}

/* Whether a cut-recv fault has made this side deaf (and clears it): a shut
 * read side may still hand out bytes queued before the cut, which a deaf
 * side must not hear. */
static bool vm_take_deaf(struct vm *vm)
{
    pthread_mutex_lock(&vm->lock);
    bool deaf = vm->fault_deaf;

    vm->fault_deaf = false;
    pthread_mutex_unlock(&vm->lock);
    return deaf;
}

int vm_fault_set(struct vm *vm, const char *point, const char *action)
{
    if (point[0] && (!vm_name_known(point, vm_hold_phases, AM_ARRAY_SIZE(vm_hold_phases)) ||
                     !vm_name_known(action, vm_fault_actions, AM_ARRAY_SIZE(vm_fault_actions))))
        return -EINVAL;
    pthread_mutex_lock(&vm->lock);
    snprintf(vm->fault_point, sizeof(vm->fault_point), "%s", point);
    snprintf(vm->fault_action, sizeof(vm->fault_action), "%s", point[0] ? action : "");
    pthread_mutex_unlock(&vm->lock);
    return 0;
}

const char *vm_handover_name(enum vm_handover h)
{
    static const char *const names[] = {
        [VM_HO_NONE] = "none", [VM_HO_IN_DOUBT] = "in-doubt", [VM_HO_COMMITTED] = "committed",
        [VM_HO_ROLLED_BACK] = "rolled-back", [VM_HO_DISCARDED] = "discarded"};

    return (unsigned)h < AM_ARRAY_SIZE(names) ? names[h] : "?";
}

int vm_hold_set(struct vm *vm, const char *phase)
{
    if (phase[0] && !vm_name_known(phase, vm_hold_phases, AM_ARRAY_SIZE(vm_hold_phases)))
        return -EINVAL;
    pthread_mutex_lock(&vm->lock);
    snprintf(vm->hold, sizeof(vm->hold), "%s", phase);
    pthread_mutex_unlock(&vm->lock);
    return 0;
}

void vm_hold_release(struct vm *vm)
{
    pthread_mutex_lock(&vm->lock);
    vm->hold_released = true;
    pthread_cond_broadcast(&vm->cond);
    pthread_mutex_unlock(&vm->lock);
}

void vm_abort(struct vm *vm)
{
    pthread_mutex_lock(&vm->lock);
    vm->aborted = true;
    if (vm->s)
        vmstream_abort(vm->s);
    pthread_cond_broadcast(&vm->cond);
    pthread_mutex_unlock(&vm->lock);
}

/* ---- the device profile ---- */

/* The VF's queue count as its VFT gives it (the SQC_VFT_V2 mailbox query a
 * VF driver starts with). Only before a guest drives the mailbox. */
static int vm_probe_qp_count(struct vm *vm, uint32_t *qps)
{
    struct qm_mailbox m = {
        .w0 = (uint16_t)(QM_MB_CMD_SQC_VFT_V2 | 1u << QM_MB_BUSY_SHIFT | 1u << QM_MB_OP_SHIFT),
    };
    uint64_t deadline = am_now_ns() + VM_MB_BUDGET_NS, vft;
    uint32_t w0 = 0, lo = 0, hi = 0;
    int ret = vfu_client_region_write(vm->c, VFU_REGION_BAR2, QM_MAILBOX, &m, sizeof(m));

    while (ret == 0) {
        ret = vfu_client_region_read(vm->c, VFU_REGION_BAR2, QM_MAILBOX, &w0, 4);
        if (ret || !(w0 & (1u << QM_MB_BUSY_SHIFT)))
            break;
        if (am_now_ns() > deadline)
            return -ETIMEDOUT;
        usleep(100);
    }
    if (ret)
        return ret;
    if ((w0 >> QM_MB_STATUS_SHIFT) & QM_MB_STATUS_MASK)
        return -EIO;
    ret = vfu_client_region_read(vm->c, VFU_REGION_BAR2, QM_MB_DATA_L, &lo, 4);
    if (!ret)
        ret = vfu_client_region_read(vm->c, VFU_REGION_BAR2, QM_MB_DATA_H, &hi, 4);
    if (ret)
        return ret;
    vft = (uint64_t)hi << 32 | lo;
    if (!(vft & (UINT64_C(1) << QM_VFT_VALID_SHIFT)))
        return -ENODEV;
    *qps = (uint32_t)((vft >> QM_VFT_NUM_SHIFT) & QM_VFT_NUM_MASK) + 1;
    return 0;
}

static int vm_probe_profile(struct vm *vm)
{
    uint8_t cfg[16];
    int ret = vfu_client_region_read(vm->c, VFU_REGION_CONFIG, 0, cfg, sizeof(cfg));

    if (ret)
        return ret;
    vm->profile.vendor_id = am_le16(cfg + 0);
    vm->profile.device_id = am_le16(cfg + 2);
    vm->profile.revision = cfg[8];
    vm->profile.ram_size = vm_ram_size(vm->ram);
    vm->profile.page_size = VM_RAM_PAGE_SIZE;
    return vm_probe_qp_count(vm, &vm->profile.qp_count);
}

const char *vm_doorbells_name(enum vm_doorbells d)
{
    static const char *const names[] = {
        [VM_DB_BAR2] = "bar2", [VM_DB_TRAPPED] = "trapped", [VM_DB_MAPPED] = "mapped"};

    return (unsigned)d < AM_ARRAY_SIZE(names) ? names[d] : "?";
}

/* Doorbell isolation: with QUE_ISO_CFG bit0 the guest rings SQ/CQ
 * doorbells in BAR4. Mapping it (the server's fd, vfu_client_region_map)
 * lets the guest store them with no message at all, the device polling the
 * page; vfu_client_vf_io then hands the mapping to the guest. A server that
 * offers no mmap (-ENOTSUP) leaves them trapped. */
static int vm_setup_doorbells(struct vm *vm, bool trap)
{
    uint32_t iso = 0;
    uint64_t size = 0;
    void *base = NULL;
    int ret = vfu_client_region_read(vm->c, VFU_REGION_BAR2, QM_QUE_ISO_CFG, &iso, 4);

    if (ret)
        return ret;
    if (!(iso & QM_QUE_ISO_EN)) {
        vm->doorbells = VM_DB_BAR2;
        return 0;
    }
    vm->doorbells = VM_DB_TRAPPED;
    if (trap)
        return 0;
    ret = vfu_client_region_map(vm->c, VFU_REGION_BAR4, &base, &size);
    if (ret == -ENOTSUP) {
        /* The server's policy (accmig serve --db-mmap) keeps it trapped. */
        am_log(AM_LOG_INFO, "vm", "%s: the server offers BAR4 trapped only: doorbells stay trapped",
               vm->attach);
        return 0;
    }
    if (ret)
        return ret;
    vm->doorbells = VM_DB_MAPPED;
    /* The guest's kicks (a device that stopped polling) go by the
     * ioeventfd the server gives for the poll-state words, straight to the
     * device; a server that gives none gets them trapped. */
    ret = vfu_client_region_io_fds(vm->c, VFU_REGION_BAR4);
    if (ret < 0)
        am_log(AM_LOG_INFO, "vm", "%s: no ioeventfd for BAR4 (%s): kicks stay trapped", vm->attach,
               strerror(-ret));
    return 0;
}

/* ---- the results file (vmm/ledger.h) ---- */

static void vm_result_write(void *opaque, const struct workload_result *r)
{
    struct vm *vm = opaque;
    struct vm_ledger_record h = {.magic = VM_LEDGER_MAGIC, .job = r->job, .tag = r->tag,
                                 .type = (uint32_t)r->type, .len = r->len};
    struct iovec iov[2] = {{.iov_base = &h, .iov_len = sizeof(h)},
                           {.iov_base = (void *)r->data, .iov_len = r->len}};
    size_t left = sizeof(h) + r->len;
    ssize_t n;

    pthread_mutex_lock(&vm->results_lock);
    n = writev(vm->results_fd, iov, 2);
    pthread_mutex_unlock(&vm->results_lock);
    if (n < 0 || (size_t)n != left)
        am_log(AM_LOG_ERR, "vm", "results file: job %u not written (%s)", r->job,
               n < 0 ? strerror(errno) : "short write");
}

/* A workload that starts or lands here: export its results, apply the
 * test knob. */
static void vm_workload_bind(struct vm *vm, struct workload *w)
{
    if (vm->results_fd >= 0)
        workload_result_sink(w, vm_result_write, vm);
    workload_test_miscount(w, vm->miscount);
}

/* ---- life cycle ---- */

int vm_ram_prealloc(struct vm_ram *ram)
{
    volatile uint8_t *host = vm_ram_host(ram);
    uint64_t size = vm_ram_size(ram);

    if (madvise((void *)host, size, MADV_POPULATE_WRITE) == 0)
        return 0;
    if (errno != EINVAL)
        return -errno;
    for (uint64_t off = 0; off < size; off += VM_RAM_PAGE_SIZE)
        host[off] = host[off]; /* kernels before 5.14: one write fault per page */
    return 0;
}

int vm_device_fd(const struct vm *vm)
{
    return vm->dev_fd;
}

uint64_t vm_device_waiting_ns(const struct vm *vm)
{
    return vfu_client_waiting_ns(vm->c);
}

int vm_device_probe(struct vm *vm)
{
    enum vfio_mig_state st;

    return vfu_client_mig_state_get(vm->c, &st);
}

void vm_device_cut(struct vm *vm)
{
    vm_device_gone(vm);
    vfu_client_cut(vm->c);
}

void vm_device_gone(struct vm *vm)
{
    pthread_mutex_lock(&vm->lock);
    vm->dev_gone = true;
    if (vm->state == VM_RUNNING || vm->state == VM_FINISHED)
        vm->state = VM_FAILED;
    pthread_mutex_unlock(&vm->lock);
}

int vm_create(const struct vm_config *cfg, struct vm **out)
{
    struct vfu_client_opts co = {0};
    uint64_t need, size;
    struct vm *vm;
    int ret;

    if (!cfg || !cfg->attach || !out || strlen(cfg->attach) >= VM_NET_PATH_MAX)
        return -EINVAL;
    need = AM_ALIGN_UP(workload_ram_size(&cfg->wl), VM_RAM_PAGE_SIZE);
    size = cfg->ram_size ? cfg->ram_size : need;
    if (size == 0 || size % VM_RAM_PAGE_SIZE || size > VM_RAM_MAX_SIZE)
        return -EINVAL;
    vm = calloc(1, sizeof(*vm));
    if (!vm)
        return -ENOMEM;
    snprintf(vm->attach, sizeof(vm->attach), "%s", cfg->attach);
    vm->wl = cfg->wl;
    vm->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : VM_DEFAULT_TIMEOUT_MS;
    pthread_mutex_init(&vm->lock, NULL);
    pthread_cond_init(&vm->cond, NULL);
    vm->state = VM_ATTACHED;
    vm->mig_fd = -1;
    vm->dev_fd = -1;
    vm->results_fd = -1;
    pthread_mutex_init(&vm->results_lock, NULL);
    {
        const char *mc = getenv("ACCMIG_TEST_GUEST_MISCOUNT"); /* test-only, docs/vm.md */
        uint64_t v = 0;

        if (mc && am_parse_u64(mc, UINT32_MAX - 1, &v) == 0)
            vm->miscount = (uint32_t)v + 1;
    }
    if (cfg->results) {
        vm->results_fd = open(cfg->results, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (vm->results_fd < 0) {
            ret = -errno;
            goto err_free;
        }
    }
    ret = vm_ram_create(size, &vm->ram);
    if (ret)
        goto err_free;
    if (cfg->prealloc && (ret = vm_ram_prealloc(vm->ram)) != 0)
        goto err_ram;
    co.timeout_ms = vm->timeout_ms;
    /* Our guest's driver never stores a doorbell over a pending one it does
     * not supersede (guest.h), so the server may let us map BAR4. */
    co.cooperative_doorbells = true;
    ret = vfu_client_connect(vm->attach, &co, &vm->c);
    if (ret)
        goto err_ram;
    vm->dev_fd = vfu_client_fd(vm->c);
    ret = vfu_client_dma_map_fd(vm->c, 0, size, vm_ram_fd(vm->ram), 0, IOMMU_READ | IOMMU_WRITE);
    if (!ret)
        ret = vfu_client_irqs_enable(vm->c, QM_NUM_VECTORS);
    if (!ret)
        ret = vm_probe_profile(vm);
    if (!ret)
        ret = vm_setup_doorbells(vm, cfg->trap_doorbells);
    if (ret)
        goto err_client;
    vfu_client_vf_io(vm->c, &vm->io);
    *out = vm;
    return 0;

err_client:
    vfu_client_destroy(vm->c);
err_ram:
    vm_ram_destroy(vm->ram);
err_free:
    if (vm->results_fd >= 0)
        close(vm->results_fd);
    pthread_mutex_destroy(&vm->results_lock);
    pthread_cond_destroy(&vm->cond);
    pthread_mutex_destroy(&vm->lock);
    free(vm);
    return ret;
}

void vm_halt(struct vm *vm)
{
    struct workload *w;

    pthread_mutex_lock(&vm->lock);
    w = vm->w;
    vm->w = NULL;
    pthread_mutex_unlock(&vm->lock);
    workload_destroy(w);
}

void vm_destroy(struct vm *vm)
{
    if (!vm)
        return;
    workload_destroy(vm->w);
    vfu_client_destroy(vm->c);
    vm_ram_destroy(vm->ram);
    if (vm->results_fd >= 0)
        close(vm->results_fd);
    pthread_mutex_destroy(&vm->results_lock);
    pthread_cond_destroy(&vm->cond);
    pthread_mutex_destroy(&vm->lock);
    free(vm);
}

const struct vmstream_profile *vm_profile(const struct vm *vm)
{
    return &vm->profile;
}

uint64_t vm_ram_bytes(const struct vm *vm)
{
    return vm_ram_size(vm->ram);
}

struct vm_ram *vm_ram_get(struct vm *vm)
{
    return vm->ram;
}

static void vm_set_workload(struct vm *vm, struct workload *w, enum vm_state st)
{
    pthread_mutex_lock(&vm->lock);
    vm->w = w;
    vm->state = st;
    pthread_mutex_unlock(&vm->lock);
}

int vm_guest_start(struct vm *vm)
{
    struct workload *w;
    int ret;

    if (vm->state != VM_ATTACHED)
        return -EINVAL;
    ret = workload_create(&vm->wl, vm_ram_guest(vm->ram), &vm->io, &w);
    if (ret)
        return ret;
    vm_workload_bind(vm, w);
    ret = workload_vcpus_start(w);
    if (ret) {
        workload_destroy(w);
        return ret;
    }
    vm_set_workload(vm, w, VM_RUNNING);
    return 0;
}

int vm_guest_wait(struct vm *vm, int timeout_ms)
{
    int ret;

    if (vm->state != VM_RUNNING && vm->state != VM_FINISHED)
        return -EINVAL;
    ret = workload_wait(vm->w, timeout_ms);
    if (ret == 0)
        vm_set_state(vm, VM_FINISHED);
    return ret;
}

enum vm_state vm_guest_poll(struct vm *vm)
{
    enum vm_state st;

    pthread_mutex_lock(&vm->lock);
    if (vm->state == VM_RUNNING && vm->w && workload_done(vm->w))
        vm->state = VM_FINISHED;
    st = vm->state;
    pthread_mutex_unlock(&vm->lock);
    return st;
}

int vm_guest_shutdown(struct vm *vm)
{
    int ret;

    if (vm->state != VM_RUNNING && vm->state != VM_FINISHED)
        return -EINVAL;
    ret = workload_shutdown(vm->w);
    vm_set_state(vm, VM_SHUT_DOWN);
    return ret;
}

int vm_guest_report(struct vm *vm, struct workload_report *r)
{
    int ret = -ENOENT;

    pthread_mutex_lock(&vm->lock);
    if (vm->w) {
        workload_report_get(vm->w, r);
        ret = 0;
    }
    pthread_mutex_unlock(&vm->lock);
    return ret;
}

void vm_status_get(struct vm *vm, struct vm_status *st)
{
    struct workload_report r;

    memset(st, 0, sizeof(*st));
    pthread_mutex_lock(&vm->lock);
    st->state = vm->state;
    snprintf(st->phase, sizeof(st->phase), "%s", vm->phase);
    snprintf(st->held, sizeof(st->held), "%s", vm->held);
    st->round = vm->round;
    st->ram_bytes_sent = vm->ram_bytes_sent;
    st->dirty_pages = vm->dirty_pages;
    st->migrations_out = vm->migrations_out;
    st->doorbells = vm->doorbells;
    st->handover = vm->ho;
    st->handover_source = vm->ho_source;
    st->migration_id = vm->ho_id;
    st->device_gone = vm->dev_gone;
    if (vm->w) {
        st->guest = true;
        st->steps = workload_steps(vm->w);
        workload_report_get(vm->w, &r);
        st->jobs = r.jobs;
        st->jobs_completed = r.jobs_completed;
        st->jobs_verified = r.jobs_verified;
        st->jobs_failed = r.jobs_failed;
    }
    pthread_mutex_unlock(&vm->lock);
}

/* ---- source ---- */

/* The device-state source for vmstream: MIG_DATA_READ until a short reply
 * (end for now in PRE_COPY, for good in STOP_COPY), then one 0. */
struct vm_dev_src {
    struct vfu_client *c;
    bool short_seen;
};

static ssize_t vm_dev_read(void *opaque, void *buf, size_t len)
{
    struct vm_dev_src *d = opaque;
    ssize_t n;

    if (d->short_seen)
        return 0;
    n = vfu_client_mig_read(d->c, buf, len);
    if (n >= 0 && (size_t)n < len)
        d->short_seen = true;
    return n;
}

static int vm_send_device(struct vm *vm, struct vmstream *s, uint64_t *bytes)
{
    struct vm_dev_src d = {.c = vm->c};
    struct vmstream_device_source src = {.read = vm_dev_read, .opaque = &d};
    uint64_t n = 0;
    int ret = vmstream_send_device(s, &src, &n);

    *bytes += n;
    return ret;
}

/* Report-and-clear of both logs, ORed into map. */
static int vm_collect_dirty(struct vm *vm, uint64_t *map, uint64_t *dma)
{
    uint64_t size = vm_ram_size(vm->ram);
    int ret = vfu_client_dma_logging_report(vm->c, 0, size, VM_RAM_PAGE_SIZE, dma);

    if (ret)
        return ret;
    ret = vm_ram_dirty_merge_dma(vm->ram, map, dma, 0, size, VM_RAM_PAGE_SIZE);
    if (ret)
        return ret;
    vm_ram_dirty_collect(vm->ram, map);
    return 0;
}

static int vm_rollback(struct vm *vm, const struct vm_undo *u, struct vm_mig_report *rep)
{
    enum vfio_mig_state st = VFIO_MIG_STATE_ERROR;
    int ret = 0;

    if (u->logging)
        vfu_client_dma_logging_stop(vm->c); /* a reset would also end it */
    if (u->device_moved) {
        ret = vfu_client_mig_state_set(vm->c, VFIO_MIG_STATE_RUNNING);
        if (ret) {
            vfu_client_mig_state_get(vm->c, &st);
            snprintf(rep->error + strlen(rep->error), sizeof(rep->error) - strlen(rep->error),
                     "; the device did not return to RUNNING (%s, left in %s): the guest stays "
                     "paused", strerror(-ret), mig_state_name(st));
            return ret;
        }
    }
    if (u->paused) {
        ret = workload_vcpus_resume(vm->w, NULL, NULL);
        if (ret)
            return ret;
    }
    rep->rolled_back = true;
    return 0;
}

static void vm_fail_note(struct vm_mig_report *rep, const char *phase, int err, const char *fmt,
                         ...) __attribute__((format(printf, 4, 5)));
static void vm_fail_note(struct vm_mig_report *rep, const char *phase, int err, const char *fmt, ...)
{
    va_list ap;

    rep->ok = false;
    rep->err = err;
    snprintf(rep->phase, sizeof(rep->phase), "%s", phase);
    va_start(ap, fmt);
    vsnprintf(rep->error, sizeof(rep->error), fmt, ap);
    va_end(ap);
}

/* A stream error with its sentence, or a local one. */
static void vm_fail_stream(struct vm_mig_report *rep, const char *phase, int err,
                           struct vmstream *s, const char *what)
{
    const char *why = s ? vmstream_error(s) : "";

    if (err == -ECANCELED)
        vm_fail_note(rep, phase, err, "%s: migration aborted", what);
    else if (why[0])
        vm_fail_note(rep, phase, err, "%s: %s", what, why);
    else
        vm_fail_note(rep, phase, err, "%s: %s", what, strerror(-err));
}

static void vm_read_epilogue(int fd, struct vm_mig_report *rep)
{
    struct vm_epilogue e;

    if (vm_net_set_timeout(fd, VM_EPILOGUE_TIMEOUT_MS) != 0 ||
        vm_net_read_full(fd, &e, sizeof(e), NULL) != 0)
        return;
    if (memcmp(e.magic, VM_EPILOGUE_MAGIC, 8) != 0 || e.version != VM_EPILOGUE_VERSION ||
        e.len != sizeof(e))
        return;
    rep->dest_reported = true;
    rep->dest_restore_us = e.restore_ns / 1000u;
    rep->dest_resume_us = e.resume_ns / 1000u;
    rep->dest_guest_us = e.guest_ns / 1000u;
    rep->dest_stop_copy_to_ack_us = e.stop_copy_to_ack_ns / 1000u;
}

struct vm_out {
    struct vm *vm;
    const char *to;
    const struct vm_mig_opts *o;
    struct vm_mig_report *rep;
    struct vmstream *s;
    struct vm_undo undo;
    uint64_t *map, *dma;
    uint64_t round_ns, round_bytes; /* time and wire bytes of the rounds so far */
    uint64_t best, sent;            /* precopy convergence (vm_out_precopy_done) */
    unsigned stalled;
    uint64_t t_open, t_pause, t_final; /* precopy start, vCPU pause, final round start */
    uint64_t id;                       /* the migration's id: channel hellos and COMMIT */
    int fd;
};

static void vm_out_progress(struct vm_out *x, uint64_t dirty)
{
    pthread_mutex_lock(&x->vm->lock);
    x->vm->round = x->rep->precopy_rounds;
    x->vm->ram_bytes_sent = x->rep->ram_bytes;
    x->vm->dirty_pages = dirty;
    pthread_mutex_unlock(&x->vm->lock);
}

/* One RAM round. A precopy round ends with a device check, which D
 * answers only after it has taken in everything before it: the round's time
 * is then the real transfer time (not just filling socket buffers), and no
 * backlog is left for the stop-copy to wait behind. */
static int vm_out_round(struct vm_out *x, bool barrier)
{
    struct vmstream_round rr;
    uint64_t t0 = am_now_ns();
    int ret = vmstream_send_ram_round(x->s, x->vm->ram, x->map, &rr);

    if (ret == 0 && barrier)
        ret = vmstream_device_check(x->s);
    if (ret)
        return ret;
    if (x->round_bytes == 0 && am_now_ns() > t0)
        x->rep->round0_bytes_per_s = rr.bytes * 1000000000u / (am_now_ns() - t0);
    x->round_ns += am_now_ns() - t0;
    x->round_bytes += rr.bytes;
    x->rep->ram_bytes += rr.bytes;
    x->rep->ram_pages += rr.pages;
    x->rep->zero_pages += rr.zero_pages;
    return 0;
}

/* Round 0 sends every page, later rounds what both logs caught; a
 * precopy round ends with a device check, the last one (vCPUs stopped)
 * does not. */
static int vm_out_send_pages(void *opaque, uint64_t *map, unsigned round, bool last)
{
    struct vm_out *x = opaque;
    struct vm_mig_report *rep = x->rep;
    int ret;

    if (last) {
        uint64_t pages = rep->ram_pages, zero = rep->zero_pages;

        ret = vm_out_round(x, false);
        if (ret) {
            vm_fail_stream(rep, "stop-copy", ret, x->s, "final RAM round");
            return ret;
        }
        rep->final_ram_pages = rep->ram_pages - pages + rep->zero_pages - zero;
        rep->final_ram_us = us_since(x->t_final);
        return 0;
    }
    if (round == 0)
        vm_ram_dirty_set_all(x->vm->ram, map);
    ret = vm_out_round(x, true);
    if (ret) {
        vm_fail_stream(rep, "precopy", ret, x->s, "RAM round");
        return ret;
    }
    rep->precopy_rounds++;
    if (rep->precopy_rounds == 1 && (ret = vm_hold_point(x->vm, "precopy")) != 0) {
        vm_fail_note(rep, "precopy", ret, "migration aborted");
        return ret;
    }
    memset(map, 0, vm_ram_bitmap_words(x->vm->ram) * sizeof(uint64_t));
    return 0;
}

/* The final collect's map still holds what precopy's last one found; it
 * adds what was written since, STOP_COPY's write-back (queue positions)
 * included. */
static int vm_out_collect(void *opaque, uint64_t *map, bool last)
{
    struct vm_out *x = opaque;
    uint64_t t = am_now_ns();
    int ret = vm_collect_dirty(x->vm, map, x->dma);
    char eb[96];

    if (last)
        x->rep->final_collect_us = us_since(t);

    if (ret)
        vm_fail_note(x->rep, last ? "stop-copy" : "precopy", ret,
                     "reading the dirty logs failed: %s",
                     vm_dev_strerror(x->vm, ret, eb, sizeof(eb)));
    return ret;
}

/* Precopy goes on until the estimate of the stop-copy fits the goal. */
static bool vm_out_precopy_done(void *opaque, unsigned rounds, uint64_t pages)
{
    struct vm_out *x = opaque;
    uint64_t goal_us = (uint64_t)x->o->downtime_ms * 1000u, rate, est_us;

    vm_out_progress(x, pages);
    /* Wire bytes per second so far; the first round (every page) sets
     * it, the small later ones refine it. */
    rate = x->round_ns ? x->round_bytes * 1000000000u / x->round_ns : 0;
    est_us = rate ? pages * VM_RAM_PAGE_SIZE * 1000000u / rate : UINT64_MAX / 2;
    est_us += VM_STOP_OVERHEAD_US;
    x->rep->expected_downtime_us = est_us;
    /* Within the goal, one more round is still worth it while rounds
     * keep halving what is left (round 1 always, unless little is
     * left): the stop-copy then carries little more than what the
     * guest writes during one short round. */
    if (pages == 0 || rounds >= x->o->max_rounds)
        return true;
    if (est_us <= goal_us && (pages <= VM_FEW_PAGES || (rounds >= 2 && pages * 2 > x->sent)))
        return true;
    x->sent = pages;
    if (pages < x->best) {
        x->best = pages;
        x->stalled = 0;
    } else if (++x->stalled >= VM_STALL_ROUNDS) {
        return true; /* not converging: the guest dirties as fast as we send */
    }
    return false;
}

/* Stop-and-copy: every step timed for the downtime split. */
static int vm_out_pause(void *opaque)
{
    struct vm_out *x = opaque;
    int ret;

    vm_set_phase(x->vm, "stop-copy");
    x->t_pause = am_now_ns();
    ret = workload_vcpus_pause(x->vm->w);
    if (ret) {
        vm_fail_note(x->rep, "stop-copy", ret, "pausing the vCPUs failed: %s", strerror(-ret));
        return ret;
    }
    x->undo.paused = true;
    x->rep->pause_us = us_since(x->t_pause);
    return 0;
}

static int vm_out_stop_device(void *opaque)
{
    struct vm_out *x = opaque;
    struct vm *vm = x->vm;
    struct vm_mig_report *rep = x->rep;
    uint64_t t = am_now_ns();
    char eb[96];
    int ret;

    ret = vfu_client_mig_state_set(vm->c, VFIO_MIG_STATE_PRE_COPY_P2P);
    if (ret) {
        vm_fail_note(rep, "stop-copy", ret, "device quiesce (PRE_COPY_P2P) failed: %s",
                     vm_dev_strerror(vm, ret, eb, sizeof(eb)));
        return ret;
    }
    rep->quiesce_us = us_since(t);
    t = am_now_ns();
    ret = vfu_client_mig_state_set(vm->c, VFIO_MIG_STATE_STOP_COPY);
    if (ret) {
        vm_fail_note(rep, "stop-copy", ret, "device STOP_COPY failed: %s",
                     vm_dev_strerror(vm, ret, eb, sizeof(eb)));
        return ret;
    }
    rep->save_us = us_since(t);
    ret = vm_hold_point(vm, "stop-copy");
    if (ret) {
        vm_fail_note(rep, "stop-copy", ret, "migration aborted");
        return ret;
    }
    x->t_final = am_now_ns();
    ret = vmstream_send_stop_copy(x->s);
    if (ret)
        vm_fail_stream(rep, "stop-copy", ret, x->s, "stop-copy marker");
    return ret;
}

/* The device state, then END (answered READY: D holds the state). */
static int vm_out_device_state(void *opaque)
{
    struct vm_out *x = opaque;
    struct vm_mig_report *rep = x->rep;
    uint64_t t = am_now_ns();
    int ret;

    ret = vm_send_device(x->vm, x->s, &rep->device_state_bytes);
    if (ret) {
        vm_fail_stream(rep, "stop-copy", ret, x->s, "device state");
        return ret;
    }
    rep->device_send_us = us_since(t);
    vm_set_phase(x->vm, "end");
    t = am_now_ns();
    ret = vmstream_send_end(x->s);
    if (ret) {
        vm_fail_stream(rep, "end", ret, x->s, "end of the stream");
        return ret;
    }
    rep->end_us = us_since(t);
    return 0;
}

static uint64_t vm_new_migration_id(void)
{
    uint64_t id = 0;

    if (getrandom(&id, sizeof(id), 0) != (ssize_t)sizeof(id) || id == 0)
        id = am_now_ns() ^ (uint64_t)getpid() << 40; /* unique enough to tell migrations apart */
    return id ? id : 1;
}

/* The handover (docs/vm.md, "The handover"). Before COMMIT leaves, a
 * failure rolls back as any other; from then on only COMMITTED (release)
 * or D's explicit refusal (D will never run it: roll back) settle it, and
 * anything else leaves the guest paused here, in doubt: -EINPROGRESS. */
static int vm_out_handover(void *opaque)
{
    struct vm_out *x = opaque;
    struct vm *vm = x->vm;
    struct vm_mig_report *rep = x->rep;
    uint64_t t, id = x->id;
    int ret;

    vm_set_phase(vm, "handover");
    ret = vm_hold_point(vm, "src-ready");
    if (ret) {
        vm_fail_note(rep, "handover", ret, "migration aborted before the handover");
        return ret;
    }
    t = am_now_ns();
    ret = vmstream_send_commit(x->s, id);
    if (ret != 0 && ret != -EINPROGRESS) {
        /* Not a byte of COMMIT left (aborted, out of order, or the stream
         * had already failed, e.g. READY never came): still ours to resume.
         * Only 0 (sent) and -EINPROGRESS (cut while sending) pass the point
         * of no return. */
        vm_fail_stream(rep, "handover", ret, x->s, "handover");
        return ret;
    }
    /* The point of no return. */
    pthread_mutex_lock(&vm->lock);
    vm->ho = VM_HO_IN_DOUBT;
    vm->ho_source = true;
    vm->ho_id = id;
    pthread_mutex_unlock(&vm->lock);
    rep->migration_id = id;
    if (ret == 0) {
        /* An abort from here on cannot undo anything: the wait below fails
         * and the handover is in doubt. */
        (void)vm_hold_point(vm, "src-commit");
        ret = vm_take_deaf(vm) ? -ECONNRESET : vmstream_wait_committed(x->s);
    }
    rep->handover_us = us_since(t);
    if (ret == 0)
        return 0;
    if (ret == -EREMOTEIO) {
        vm_fail_stream(rep, "handover", ret, x->s, "handover");
        return ret; /* D refused: it does not run the guest, so we do */
    }
    vm_fail_note(rep, "handover", -EINPROGRESS,
                 "handover in doubt: the commit went out but no answer came (%s); the guest "
                 "stays paused here until `accmig migrate --resolve` says which side runs it",
                 vmstream_error(x->s)[0] ? vmstream_error(x->s) : strerror(-ret));
    rep->in_doubt = true;
    return -EINPROGRESS;
}

/* Connection, handshake and the early device data. */
static int vm_out_open(void *opaque)
{
    struct vm_out *x = opaque;
    struct vm *vm = x->vm;
    const char *to = x->to;
    int *fd = &x->fd;
    struct vm_mig_report *rep = x->rep;
    struct vm_net_endpoint ep;
    uint64_t page_size = VM_RAM_PAGE_SIZE;
    struct iommu_range all = {.iova = 0, .length = vm_ram_size(vm->ram)};
    char why[160];
    int ret;

    ret = vm_net_endpoint_parse(to, &ep, why, sizeof(why));
    if (ret) {
        vm_fail_note(rep, "connect", ret, "%s", why);
        return ret;
    }
    vm_set_phase(vm, "connect");
    ret = vm_net_connect(&ep, x->o->timeout_ms, fd);
    if (ret) {
        vm_fail_note(rep, "connect", ret, "cannot connect to %s: %s", to, strerror(-ret));
        return ret;
    }
    pthread_mutex_lock(&vm->lock);
    vm->mig_fd = *fd;
    pthread_mutex_unlock(&vm->lock);
    ret = vmstream_create(*fd, VMSTREAM_SOURCE, x->o->timeout_ms, &x->s);
    if (ret) {
        vm_fail_note(rep, "connect", ret, "migration stream: %s", strerror(-ret));
        return ret;
    }
    vm_set_stream(vm, x->s);
    vm_set_phase(vm, "handshake");
    ret = vmstream_set_channels(x->s, x->o->channels, x->id);
    if (ret == 0)
        ret = vmstream_handshake(x->s, &vm->profile, NULL);
    if (ret) {
        vm_fail_stream(rep, "handshake", ret, x->s, "handshake");
        return ret;
    }
    /* The RAM channels: one more connection each, to the same endpoint. */
    rep->channels = vmstream_channels(x->s);
    for (unsigned i = 0; i < rep->channels && ret == 0; i++) {
        int cfd = -1;

        ret = vm_net_connect(&ep, x->o->timeout_ms, &cfd);
        if (ret) {
            vm_fail_note(rep, "handshake", ret, "cannot connect RAM channel %u to %s: %s", i + 1,
                         to, strerror(-ret));
            return ret;
        }
        ret = vmstream_attach_channel(x->s, cfd);
    }
    if (ret == 0)
        ret = vmstream_channels_wait(x->s);
    if (ret) {
        vm_fail_stream(rep, "handshake", ret, x->s, "RAM channels");
        return ret;
    }
    /* Logs on before the first page is read: whatever is written from
     * here on is sent again. */
    vm_set_phase(vm, "device");
    ret = vfu_client_dma_logging_start(vm->c, &page_size, &all, 1);
    if (ret == 0 && page_size != VM_RAM_PAGE_SIZE)
        ret = -EOPNOTSUPP;
    if (ret) {
        vm_fail_note(rep, "device", ret, "device DMA logging: %s",
                     vm_dev_strerror(vm, ret, why, sizeof(why)));
        if (ret == -EOPNOTSUPP)
            vfu_client_dma_logging_stop(vm->c);
        return ret;
    }
    x->undo.logging = true;
    vm_ram_dirty_collect(vm->ram, x->map); /* clears the CPU log; map is rebuilt */
    ret = vfu_client_mig_state_set(vm->c, VFIO_MIG_STATE_PRE_COPY);
    x->undo.device_moved = true; /* even a failed SET may have moved it */
    if (ret) {
        vm_fail_note(rep, "device", ret, "device PRE_COPY failed: %s",
                     vm_dev_strerror(vm, ret, why, sizeof(why)));
        return ret;
    }
    ret = vm_send_device(vm, x->s, &rep->device_state_bytes);
    if (ret) {
        vm_fail_stream(rep, "device", ret, x->s, "early device state");
        return ret;
    }
    ret = vmstream_device_check(x->s);
    if (ret) {
        vm_fail_stream(rep, "device", ret, x->s, "device check");
        return ret;
    }
    vm_set_phase(vm, "precopy");
    return 0;
}

/* The guest lives on the destination now: let go of it and of the VF
 * (reset: the next client gets a fresh function). */
static void vm_release(struct vm *vm)
{
    struct workload *w = vm->w;

    vfu_client_dma_logging_stop(vm->c);
    vm_set_workload(vm, NULL, VM_MIGRATED);
    workload_destroy(w);
    vfu_client_reset(vm->c);
    pthread_mutex_lock(&vm->lock);
    vm->migrations_out++;
    vm->ho = VM_HO_COMMITTED;
    vm->phase[0] = '\0';
    pthread_mutex_unlock(&vm->lock);
}

static int vm_out_step_done(void *opaque, enum mig_core_step step)
{
    struct vm_out *x = opaque;

    if (step == MIG_CORE_OPEN)
        x->t_open = am_now_ns();
    return 0;
}

/* Before the point of no return (or after D's explicit refusal): tell D,
 * then the guest carries on here. */
static void vm_out_rollback(void *opaque, int err)
{
    struct vm_out *x = opaque;
    struct vm *vm = x->vm;

    (void)err;
    if (x->s)
        vmstream_send_abort(x->s); /* after READY: D may discard at once */
    pthread_mutex_lock(&vm->lock);
    if (vm->ho == VM_HO_IN_DOUBT)
        vm->ho = VM_HO_ROLLED_BACK; /* D refused after COMMIT */
    pthread_mutex_unlock(&vm->lock);
    if (vm_rollback(vm, &x->undo, x->rep) == 0)
        am_log(AM_LOG_INFO, "vm", "migration to %s failed (%s): the guest carries on here", x->to,
               x->rep->error);
    else
        am_log(AM_LOG_ERR, "vm", "migration to %s failed and could not be undone: %s", x->to,
               x->rep->error);
}

/* The mini-VMM's steps for the orchestrator (vmm/migrate_core.h): the
 * DMA log starts in open, before PRE_COPY's first read. */
static const struct mig_core_ops vm_out_ops = {
    .open = vm_out_open,
    .log_start = NULL,
    .send_pages = vm_out_send_pages,
    .collect = vm_out_collect,
    .precopy_done = vm_out_precopy_done,
    .pause = vm_out_pause,
    .stop_device = vm_out_stop_device,
    .device_state = vm_out_device_state,
    .handover = vm_out_handover,
    .step_done = vm_out_step_done,
    .rollback = vm_out_rollback,
};

int vm_migrate_out(struct vm *vm, const char *to, const struct vm_mig_opts *opts,
                   struct vm_mig_report *rep)
{
    struct vm_mig_opts o = opts ? *opts : (struct vm_mig_opts){0};
    struct vm_out x = {.vm = vm, .to = to, .o = &o, .rep = rep, .best = UINT64_MAX, .fd = -1,
                       .id = vm_new_migration_id()};
    enum vm_state was = vm->state;
    uint64_t t0 = am_now_ns();
    int ret;

    memset(rep, 0, sizeof(*rep));
    (void)vm_take_deaf(vm); /* a cut of an earlier migration is not this one's */
    snprintf(rep->peer, sizeof(rep->peer), "%s", to ? to : "");
    if (!o.downtime_ms)
        o.downtime_ms = VM_DEFAULT_DOWNTIME_MS;
    if (!o.max_rounds)
        o.max_rounds = VM_DEFAULT_MAX_ROUNDS;
    if (o.timeout_ms <= 0)
        o.timeout_ms = vm->timeout_ms;
    if (!to || (was != VM_RUNNING && was != VM_FINISHED)) {
        vm_fail_note(rep, "start", -EINVAL, "no guest runs here to migrate (state %s)",
                     vm_state_name(was));
        return -EINVAL;
    }
    if (vm_aborted(vm)) {
        vm_fail_note(rep, "start", -ECANCELED, "the VM is shutting down");
        return -ECANCELED;
    }
    x.map = calloc(vm_ram_bitmap_words(vm->ram), sizeof(uint64_t));
    x.dma = calloc(vm_ram_bitmap_words(vm->ram), sizeof(uint64_t));
    x.sent = vm_ram_pages(vm->ram);
    pthread_mutex_lock(&vm->lock);
    vm->state = VM_MIGRATING;
    vm->round = vm->ram_bytes_sent = vm->dirty_pages = 0;
    pthread_mutex_unlock(&vm->lock);
    if (!x.map || !x.dma) {
        vm_fail_note(rep, "start", -ENOMEM, "out of memory for the dirty bitmaps");
        ret = -ENOMEM;
        vm_out_rollback(&x, ret);
    } else {
        ret = mig_core_run(&(struct mig_core){.ops = &vm_out_ops, .opaque = &x, .ram = true,
                                               .map = x.map, .pages = vm_ram_pages(vm->ram)});
    }
    if (ret == 0) {
        rep->downtime_us = us_since(x.t_pause);
        rep->precopy_us = (x.t_pause - x.t_open) / 1000u;
        rep->total_us = us_since(t0);
        rep->ram_bytes_per_s = x.round_ns ? x.round_bytes * 1000000000u / x.round_ns : 0;
        vm_read_epilogue(x.fd, rep);
    }
    vm_set_stream(vm, NULL);
    vmstream_destroy(x.s);
    pthread_mutex_lock(&vm->lock);
    vm->mig_fd = -1;
    pthread_mutex_unlock(&vm->lock);
    if (x.fd >= 0)
        close(x.fd);
    free(x.map);
    free(x.dma);
    if (ret == 0) {
        rep->ok = true;
        snprintf(rep->phase, sizeof(rep->phase), "done");
        vm_release(vm);
        return 0;
    }
    rep->total_us = us_since(t0);
    if (ret == -EINPROGRESS) {
        /* Past the point of no return: never resume by ourselves. */
        pthread_mutex_lock(&vm->lock);
        vm->doubt_undo = x.undo;
        vm->state = VM_IN_DOUBT;
        vm->phase[0] = '\0';
        pthread_mutex_unlock(&vm->lock);
        am_log(AM_LOG_ERR, "vm", "migration to %s: %s", to, rep->error);
        return ret;
    }
    pthread_mutex_lock(&vm->lock);
    /* A rollback that could not bring the device back leaves the guest
     * paused for good: failed, not running (a shutdown would wait for
     * vCPUs that never resume). */
    vm->state = rep->rolled_back ? was : VM_FAILED;
    vm->phase[0] = '\0';
    pthread_mutex_unlock(&vm->lock);
    return ret;
}

/* ---- destination ---- */

struct vm_in {
    struct vm *vm;
    struct workload *w; /* started by finish */
};

static int vm_dev_write(void *opaque, const void *buf, size_t len, char *why, size_t why_len)
{
    struct vm_in *x = opaque;
    int ret = vfu_client_mig_write(x->vm->c, buf, len);

    if (ret)
        snprintf(why, why_len, "the VF refused the device state (MIG_DATA_WRITE: %s)",
                 strerror(-ret));
    return ret;
}

/* After END: the state is loaded and the guest RAM checked, nothing runs
 * (vmstream answers READY once this returns 0). */
static int vm_dev_finish(void *opaque, char *why, size_t why_len)
{
    struct vm_in *x = opaque;
    struct vm *vm = x->vm;
    uint64_t t = am_now_ns();
    int ret;

    ret = vfu_client_mig_state_set(vm->c, VFIO_MIG_STATE_STOP);
    if (ret) {
        snprintf(why, why_len, "restoring the device state failed (RESUMING -> STOP: %s)",
                 strerror(-ret));
        return ret;
    }
    vm->dest.restore_ns = am_now_ns() - t;
    ret = workload_attach(vm_ram_guest(vm->ram), &vm->io, &x->w);
    if (ret) {
        snprintf(why, why_len, "the guest RAM holds no valid workload (%s)", strerror(-ret));
        return ret;
    }
    vm_workload_bind(vm, x->w);
    pthread_mutex_lock(&vm->lock);
    vm->w = x->w;
    pthread_mutex_unlock(&vm->lock);
    if (vm_hold_point(vm, "dst-end") != 0) {
        snprintf(why, why_len, "migration aborted");
        return -ECANCELED;
    }
    return 0;
}

/* After COMMIT: the guest is ours to run. */
static int vm_dest_start(struct vm *vm, char *why, size_t why_len)
{
    uint64_t t = am_now_ns();
    int ret = vfu_client_mig_state_set(vm->c, VFIO_MIG_STATE_RUNNING);

    if (ret) {
        snprintf(why, why_len, "the device did not resume (STOP -> RUNNING: %s)", strerror(-ret));
        return ret;
    }
    vm->dest.resume_ns = am_now_ns() - t;
    t = am_now_ns();
    ret = workload_vcpus_start(vm->w);
    if (ret) {
        snprintf(why, why_len, "the vCPUs did not start (%s)", strerror(-ret));
        return ret;
    }
    vm->dest.guest_ns = am_now_ns() - t;
    return 0;
}

static void vm_send_epilogue(struct vm *vm, int fd, const struct vmstream_stats *st)
{
    struct vm_epilogue e = vm->dest;

    memcpy(e.magic, VM_EPILOGUE_MAGIC, 8);
    e.version = VM_EPILOGUE_VERSION;
    e.len = sizeof(e);
    e.stop_copy_to_ack_ns = st->done_ns > st->stop_copy_ns ? st->done_ns - st->stop_copy_ns : 0;
    vm_net_write_full(fd, &e, sizeof(e)); /* advisory: the ack already went */
}

/* Throws away what an incoming migration left: guest stopped, VF reset,
 * RAM cleared. */
static void vm_discard(struct vm *vm)
{
    struct workload *w;
    uint64_t t;
    int ret;

    pthread_mutex_lock(&vm->lock);
    w = vm->w;
    vm->w = NULL;
    vm->state = VM_FAILED;
    pthread_mutex_unlock(&vm->lock);
    workload_destroy(w);
    /* The one device call here; timed, so a slow or stuck server shows in
     * the log rather than as a VMM that seems to hang. */
    t = am_now_ns();
    ret = vfu_client_reset(vm->c);
    if (ret != 0)
        am_log(AM_LOG_ERR, "vm", "discard: the VF did not take the reset (%s, after %llu ms); "
               "detaching resets it", strerror(-ret), (unsigned long long)us_since(t) / 1000u);
    else
        am_log(AM_LOG_INFO, "vm", "discard: device reset took %llu ms",
               (unsigned long long)us_since(t) / 1000u);
    vm_ram_zero_range(vm->ram, 0, vm_ram_size(vm->ram));
    pthread_mutex_lock(&vm->lock);
    if (vm->ho == VM_HO_IN_DOUBT)
        vm->ho = VM_HO_DISCARDED;
    pthread_mutex_unlock(&vm->lock);
}

static int vm_accept(struct vm *vm, int listen_fd, int timeout_ms, int *fd)
{
    uint64_t deadline = am_now_ns() + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms) * 1000000u;

    for (;;) {
        int slice = VM_ACCEPT_SLICE_MS, ret;

        if (vm_aborted(vm))
            return -ECANCELED;
        /* A guest arriving now would have no device: stop waiting. Seen
         * here too, not only through vm_abort, because the server's hang-up
         * may come before this wait began. */
        if (vm_dev_is_gone(vm))
            return -ENODEV;
        if (timeout_ms >= 0) {
            uint64_t now = am_now_ns();
            if (now >= deadline)
                return -ETIMEDOUT;
            slice = (int)AM_MIN((uint64_t)slice, (deadline - now) / 1000000u + 1);
        }
        ret = vm_net_accept(listen_fd, slice, fd);
        if (ret != -ETIMEDOUT)
            return ret;
    }
}

int vm_incoming(struct vm *vm, int listen_fd, int accept_timeout_ms, struct vm_mig_report *rep)
{
    struct vm_in x = {.vm = vm};
    struct vmstream_device_ops ops = {.write = vm_dev_write, .finish = vm_dev_finish, .opaque = &x};
    struct vmstream_profile peer;
    struct vmstream_stats st;
    struct vmstream *s = NULL;
    char why[VMSTREAM_REASON_MAX - 64];
    uint64_t t0, id = 0;
    int fd = -1, ret;

    memset(rep, 0, sizeof(*rep));
    if (vm->state != VM_ATTACHED && vm->state != VM_FAILED) {
        vm_fail_note(rep, "start", -EINVAL, "a guest is already here (state %s)",
                     vm_state_name(vm->state));
        return -EINVAL;
    }
    memset(&vm->dest, 0, sizeof(vm->dest));
    (void)vm_take_deaf(vm); /* a cut of an earlier migration is not this one's */
    vm_set_state(vm, VM_INCOMING);
    vm_set_phase(vm, "wait");
    ret = vm_accept(vm, listen_fd, accept_timeout_ms, &fd);
    if (ret) {
        vm_fail_note(rep, "wait", ret, "no source connected: %s", strerror(-ret));
        goto fail;
    }
    t0 = am_now_ns();
    pthread_mutex_lock(&vm->lock);
    vm->mig_fd = fd;
    pthread_mutex_unlock(&vm->lock);
    ret = vmstream_create(fd, VMSTREAM_DEST, vm->timeout_ms, &s);
    if (ret) {
        vm_fail_note(rep, "handshake", ret, "migration stream: %s", strerror(-ret));
        goto fail;
    }
    vm_set_stream(vm, s);
    vm_set_phase(vm, "handshake");
    ret = vmstream_set_channels(s, VMSTREAM_CHANNELS_MAX, 0);
    if (ret == 0)
        ret = vmstream_handshake(s, &vm->profile, &peer);
    if (ret) {
        vm_fail_stream(rep, "handshake", ret, s, "handshake");
        goto fail;
    }
    /* The source's RAM channels connect to the same listening socket. */
    rep->channels = vmstream_channels(s);
    for (unsigned i = 0; i < rep->channels && ret == 0; i++) {
        int cfd = -1;

        ret = vm_accept(vm, listen_fd, vm->timeout_ms, &cfd);
        if (ret) {
            vm_fail_note(rep, "handshake", ret, "RAM channel %u of %u did not connect: %s", i + 1,
                         rep->channels, strerror(-ret));
            goto fail;
        }
        ret = vmstream_accept_channel(s, cfd);
        if (ret)
            vm_fail_stream(rep, "handshake", ret, s, "RAM channels");
    }
    if (ret)
        goto fail;
    ret = vm_hold_point(vm, "incoming");
    if (ret) {
        vm_fail_note(rep, "handshake", ret, "migration aborted");
        goto fail;
    }
    vm_set_phase(vm, "receive");
    ret = vfu_client_mig_state_set(vm->c, VFIO_MIG_STATE_RESUMING);
    if (ret) {
        vm_fail_note(rep, "receive", ret, "device RESUMING failed: %s",
                     vm_dev_strerror(vm, ret, why, sizeof(why)));
        goto fail;
    }
    ret = vmstream_recv_loop(s, vm->ram, &ops);
    vmstream_stats_get(s, &st);
    rep->precopy_rounds = st.rounds ? st.rounds - (st.stop_copy_ns ? 1 : 0) : 0;
    rep->ram_bytes = st.ram_bytes;
    rep->ram_pages = st.ram_pages;
    rep->zero_pages = st.zero_pages;
    rep->device_state_bytes = st.dev_bytes;
    if (ret) {
        vm_fail_stream(rep, "receive", ret, s, "receiving the guest");
        goto fail;
    }
    /* READY went out: from here the source may hand over at any moment. */
    vm_set_phase(vm, "handover");
    pthread_mutex_lock(&vm->lock);
    vm->ho = VM_HO_IN_DOUBT;
    vm->ho_source = false;
    vm->ho_id = 0;
    pthread_mutex_unlock(&vm->lock);
    if (vm_hold_point(vm, "dst-ready") != 0) {
        ret = -ECANCELED; /* in doubt all the same: the source may have committed */
    } else {
        /* Deaf (cut-recv): a COMMIT queued before the cut is not read
         * either, as on the source side. */
        ret = vm_take_deaf(vm) ? -ECONNRESET : vmstream_recv_commit(s, &id);
    }
    if (ret == -ECONNABORTED) {
        vm_fail_stream(rep, "handover", ret, s, "handover");
        goto fail;
    }
    if (ret) {
        vm_fail_note(rep, "handover", -EINPROGRESS,
                     "handover in doubt: READY went out but no commit came (%s); the guest is "
                     "held here, not running, until `accmig migrate --resolve`",
                     ret == -ECANCELED  ? "aborted"
                     : vmstream_error(s)[0] ? vmstream_error(s)
                                            : strerror(-ret));
        rep->in_doubt = true;
        ret = -EINPROGRESS;
        goto in_doubt;
    }
    rep->migration_id = id;
    pthread_mutex_lock(&vm->lock);
    vm->ho_id = id;
    pthread_mutex_unlock(&vm->lock);
    ret = vm_dest_start(vm, why, sizeof(why));
    if (ret) {
        /* Tell the source we will never run it: it resumes its own. */
        vmstream_send_committed(s, ret, why);
        vm_fail_note(rep, "handover", ret, "%s", why);
        goto fail;
    }
    pthread_mutex_lock(&vm->lock);
    vm->ho = VM_HO_COMMITTED;
    vm->state = VM_RUNNING;
    pthread_mutex_unlock(&vm->lock);
    (void)vm_hold_point(vm, "dst-commit");
    /* The guest runs here whether or not this answer arrives. */
    ret = vmstream_send_committed(s, 0, "");
    vmstream_stats_get(s, &st);
    if (ret == 0)
        vm_send_epilogue(vm, fd, &st);
    rep->total_us = us_since(t0);
    rep->dest_reported = true;
    rep->dest_restore_us = vm->dest.restore_ns / 1000u;
    rep->dest_resume_us = vm->dest.resume_ns / 1000u;
    rep->dest_guest_us = vm->dest.guest_ns / 1000u;
    rep->dest_stop_copy_to_ack_us =
        st.done_ns > st.stop_copy_ns ? (st.done_ns - st.stop_copy_ns) / 1000u : 0;
    rep->ok = true;
    snprintf(rep->phase, sizeof(rep->phase), "done");
    vm_set_stream(vm, NULL);
    vmstream_destroy(s);
    close(fd);
    pthread_mutex_lock(&vm->lock);
    vm->state = VM_RUNNING;
    vm->phase[0] = '\0';
    vm->mig_fd = -1;
    pthread_mutex_unlock(&vm->lock);
    return 0;

in_doubt:
    vm_set_stream(vm, NULL);
    vmstream_destroy(s);
    close(fd);
    pthread_mutex_lock(&vm->lock);
    vm->state = VM_IN_DOUBT;
    vm->phase[0] = '\0';
    vm->mig_fd = -1;
    pthread_mutex_unlock(&vm->lock);
    am_log(AM_LOG_ERR, "vm", "incoming migration: %s", rep->error);
    return ret;

fail:
    vm_set_stream(vm, NULL);
    vmstream_destroy(s);
    pthread_mutex_lock(&vm->lock);
    vm->mig_fd = -1;
    pthread_mutex_unlock(&vm->lock);
    if (fd >= 0)
        close(fd);
    vm_discard(vm);
    vm_set_phase(vm, "");
    am_log(AM_LOG_INFO, "vm", "incoming migration failed (%s): state discarded, VF reset",
           rep->error);
    return ret;
}

/* ---- settling a handover in doubt ---- */

int vm_resolve(struct vm *vm, bool run_here, char *why, size_t why_len)
{
    struct vm_mig_report rep;
    enum vm_state st;
    bool here;
    int ret;

    pthread_mutex_lock(&vm->lock);
    st = vm->state;
    here = vm->w != NULL && (st == VM_RUNNING || st == VM_FINISHED);
    pthread_mutex_unlock(&vm->lock);
    why[0] = '\0';
    if (st != VM_IN_DOUBT) {
        if (here == run_here)
            return 0; /* it is already so */
        snprintf(why, why_len, "%s", here ? "the guest runs here: it stays"
                                          : "the guest is not here to run");
        return -EPERM;
    }
    if (vm->ho_source && run_here) {
        memset(&rep, 0, sizeof(rep));
        ret = vm_rollback(vm, &vm->doubt_undo, &rep);
        if (ret) {
            snprintf(why, why_len, "resuming the guest here failed: %s",
                     rep.error[0] ? rep.error : strerror(-ret));
            return ret;
        }
        pthread_mutex_lock(&vm->lock);
        vm->state = VM_RUNNING;
        vm->ho = VM_HO_ROLLED_BACK;
        pthread_mutex_unlock(&vm->lock);
        am_log(AM_LOG_INFO, "vm", "handover resolved: the guest runs here (source) again");
    } else if (vm->ho_source) {
        vm_release(vm);
        am_log(AM_LOG_INFO, "vm", "handover resolved: the guest runs on the destination");
    } else if (run_here) {
        ret = vm_dest_start(vm, why, why_len);
        if (ret)
            return ret;
        pthread_mutex_lock(&vm->lock);
        vm->state = VM_RUNNING;
        vm->ho = VM_HO_COMMITTED;
        pthread_mutex_unlock(&vm->lock);
        am_log(AM_LOG_INFO, "vm", "handover resolved: the guest runs here (destination)");
    } else {
        vm_discard(vm);
        am_log(AM_LOG_INFO, "vm", "handover resolved: the guest stays with the source; "
               "state discarded, VF reset");
    }
    return 0;
}

/* ---- JSON views ---- */

static void j_u64(json_object *o, const char *k, uint64_t v)
{
    json_object_object_add(o, k, json_object_new_int64(v > INT64_MAX ? INT64_MAX : (int64_t)v));
}

static void j_str(json_object *o, const char *k, const char *v)
{
    json_object_object_add(o, k, json_object_new_string(v));
}

/* A double with a fixed number of decimals in the text. */
static void j_dbl(json_object *o, const char *k, double v, int decimals)
{
    char buf[48];

    snprintf(buf, sizeof(buf), "%.*f", decimals, v);
    json_object_object_add(o, k, json_object_new_double_s(strtod(buf, NULL), buf));
}

json_object *vm_mig_report_json(const struct vm_mig_report *r)
{
    json_object *j = json_object_new_object();

    /* Field names shared with the in-process demo's migration_log where the
     * quantity is the same (downtime_us, quiesce_us, last_pages...). */
    json_object_object_add(j, "ok", json_object_new_boolean(r->ok));
    j_str(j, "to", r->peer);
    j_str(j, "phase", r->phase);
    if (!r->ok) {
        j_str(j, "failed_step", r->phase);
        j_str(j, "error", r->error);
        json_object_object_add(j, "rolled_back", json_object_new_boolean(r->rolled_back));
        json_object_object_add(j, "in_doubt", json_object_new_boolean(r->in_doubt));
    }
    if (r->migration_id) {
        char id[24];

        snprintf(id, sizeof(id), "%016llx", (unsigned long long)r->migration_id);
        j_str(j, "migration_id", id);
    }
    j_u64(j, "precopy_rounds", r->precopy_rounds);
    j_u64(j, "ram_bytes", r->ram_bytes);
    j_u64(j, "ram_pages", r->ram_pages);
    j_u64(j, "zero_pages", r->zero_pages);
    j_u64(j, "last_pages", r->final_ram_pages);
    j_u64(j, "device_state_bytes", r->device_state_bytes);
    j_dbl(j, "ram_mb_s", (double)r->ram_bytes_per_s / 1e6, 1);
    j_dbl(j, "round0_mb_s", (double)r->round0_bytes_per_s / 1e6, 1);
    j_u64(j, "total_us", r->total_us);
    j_u64(j, "precopy_us", r->precopy_us);
    j_u64(j, "channels", r->channels);
    j_u64(j, "downtime_us", r->downtime_us);
    j_u64(j, "expected_downtime_us", r->expected_downtime_us);
    j_u64(j, "pause_us", r->pause_us);
    j_u64(j, "quiesce_us", r->quiesce_us);
    j_u64(j, "save_us", r->save_us);
    j_u64(j, "final_ram_us", r->final_ram_us);
    j_u64(j, "final_collect_us", r->final_collect_us);
    j_u64(j, "device_send_us", r->device_send_us);
    j_u64(j, "end_to_ack_us", r->end_us);
    j_u64(j, "handover_us", r->handover_us);
    json_object_object_add(j, "dest_reported", json_object_new_boolean(r->dest_reported));
    if (r->dest_reported) {
        j_u64(j, "restore_us", r->dest_restore_us);
        j_u64(j, "resume_us", r->dest_resume_us);
        j_u64(j, "guest_start_us", r->dest_guest_us);
        j_u64(j, "dest_stop_copy_to_ack_us", r->dest_stop_copy_to_ack_us);
        j_u64(j, "device_downtime_us",
              r->quiesce_us + r->save_us + r->dest_restore_us + r->dest_resume_us);
    }
    return j;
}

json_object *vm_status_json(const struct vm_status *st)
{
    json_object *j = json_object_new_object();

    j_str(j, "state", vm_state_name(st->state));
    j_str(j, "phase", st->phase);
    j_str(j, "held", st->held);
    json_object_object_add(j, "device_gone", json_object_new_boolean(st->device_gone));
    j_u64(j, "round", st->round);
    j_u64(j, "ram_bytes_sent", st->ram_bytes_sent);
    j_u64(j, "dirty_pages", st->dirty_pages);
    json_object_object_add(j, "guest", json_object_new_boolean(st->guest));
    j_u64(j, "steps", st->steps);
    j_u64(j, "jobs", st->jobs);
    j_u64(j, "jobs_completed", st->jobs_completed);
    j_u64(j, "jobs_verified", st->jobs_verified);
    j_u64(j, "jobs_failed", st->jobs_failed);
    j_u64(j, "migrations_out", st->migrations_out);
    j_str(j, "doorbells", vm_doorbells_name(st->doorbells));
    j_str(j, "handover", vm_handover_name(st->handover));
    if (st->handover != VM_HO_NONE)
        j_str(j, "handover_role", st->handover_source ? "source" : "destination");
    if (st->migration_id) {
        char id[24];

        snprintf(id, sizeof(id), "%016llx", (unsigned long long)st->migration_id);
        j_str(j, "migration_id", id);
    }
    return j;
}

json_object *vm_workload_report_json(const struct workload_report *r)
{
    json_object *j = json_object_new_object(), *d = json_object_new_object(),
                *t = json_object_new_object();

    j_u64(j, "jobs", r->jobs);
    j_u64(j, "jobs_submitted", r->jobs_submitted);
    j_u64(j, "jobs_completed", r->jobs_completed);
    j_u64(j, "jobs_verified", r->jobs_verified);
    j_u64(j, "jobs_failed", r->jobs_failed);
    j_u64(j, "jobs_duplicated", r->jobs_duplicated);
    j_u64(j, "jobs_lost", r->jobs_lost);
    j_u64(j, "stray_completions", r->stray_completions);
    j_u64(j, "bytes_in", r->bytes_in);
    j_u64(j, "bytes_out", r->bytes_out);
    j_u64(j, "sgl_jobs", r->sgl_jobs);
    j_str(j, "engine", workload_engine_name(r->engine));
    /* ZIP: jobs_by_format (deflate, zlib, gzip); SEC/HPRE: jobs_by_kind. */
    for (unsigned k = 0; k < AM_ARRAY_SIZE(r->jobs_by_type); k++) {
        const char *kind = workload_kind_name(&(struct workload_config){.engine = r->engine}, k);

        if (kind)
            j_u64(t, kind, r->jobs_by_type[k]);
    }
    json_object_object_add(j, r->engine == GUEST_ENGINE_ZIP ? "jobs_by_format" : "jobs_by_kind", t);
    if (r->first_failed_job != UINT64_MAX) {
        j_u64(j, "first_failed_job", r->first_failed_job);
        j_str(j, "first_failure", r->first_failure);
    }
    j_u64(d, "irqs", r->driver.irqs);
    j_u64(d, "spurious_irqs", r->driver.spurious_irqs);
    j_u64(d, "eqes", r->driver.eqes);
    j_u64(d, "cqes", r->driver.cqes);
    j_u64(d, "cqes_without_irq", r->driver.cqes_without_irq);
    j_u64(d, "aeqes", r->driver.aeqes);
    j_u64(d, "bad_cqes", r->driver.bad_cqes);
    j_u64(d, "submit_busy", r->driver.submit_busy);
    json_object_object_add(j, "driver", d);
    return j;
}

bool vm_workload_report_ok(const struct workload_report *r)
{
    return r->jobs_verified == r->jobs && r->jobs_failed == 0 && r->jobs_duplicated == 0 &&
           r->jobs_lost == 0 && r->stray_completions == 0 && r->driver.bad_cqes == 0;
}
