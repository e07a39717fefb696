/* mig/pf_msg: the PF driver's answer to VF messages (see mig.h).
 *
 * The HiSilicon migration driver sits on the PF driver; a VF's driver talks
 * to that PF driver through the IFC doorbells: it leaves a message with a
 * SRC mailbox command, raises IFC_INT_SET_V and waits (40 x 10 ms) until
 * the PF has taken it. This is what the Linux PF driver's qm_cmd_process /
 * qm_handle_cmd_msg do, through PF BAR2 registers only.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/common.h"
#include "common/ratelimit.h"
#include "mig/mig.h"
#include "mig/mig_hw.h"

#define PF_MSG_LOG "pf"
#define PF_MSG_QOS_DEFAULT 1000u /* the PF driver's func_qos for a fresh VF */
#define PF_MSG_QOS_RATE 100u     /* the rate unit it reports (QM_QOS_RATE) */
#define PF_MSG_ACK_BUDGET_NS 100000000u /* it waits 10 x 10 ms for a VF */

struct mig_pf_msg {
    struct mig_hw hw; /* the PF's own door: function 0, its registers at 0 */
    pthread_t thread;
    /* lock: pending, stop, answered, failed. Leaf: nothing is called with
     * it held. */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool pending, stop;
    uint64_t answered, failed; /* messages served; ones that could not be */
    struct am_ratelimit rl;    /* VFs' messages are guest input */
};

static void pf_msg_count(struct mig_pf_msg *p, bool ok)
{
    pthread_mutex_lock(&p->lock);
    if (ok)
        p->answered++;
    else
        p->failed++;
    pthread_mutex_unlock(&p->lock);
}

/* PF -> one VF: SRC mailbox, IFC_INT_CFG, IFC_INT_SET_P, then wait for the
 * VF to take it (its READY_STATUS bit clears), as qm_ping_single_vf. */
static int pf_msg_send(struct mig_pf_msg *p, unsigned vf, uint64_t msg)
{
    uint32_t bit = vf < 32 ? 1u << vf : 1u << (vf - 32);
    uint64_t ready = vf < 32 ? QM_PF_IFC_READY_STATUS : QM_PF_IFC_READY_STATUS_H;
    int rc = mig_hw_mailbox(&p->hw, QM_MB_CMD_SRC, (uint16_t)vf, msg, 0, NULL);

    if (rc == 0)
        rc = mig_hw_write32(&p->hw, QM_PF_IFC_INT_CFG, vf);
    if (rc == 0)
        rc = mig_hw_write32(&p->hw, QM_PF_IFC_INT_SET_P, 1);
    if (rc == 0)
        rc = mig_hw_poll32(&p->hw, ready, bit, 0, PF_MSG_ACK_BUDGET_NS, NULL);
    return rc;
}

/* One VF's message: take it (DST), ack the VF's signal, act. */
static void pf_msg_serve(struct mig_pf_msg *p, unsigned vf)
{
    uint64_t msg = 0;
    uint32_t bit = vf < 32 ? 1u << vf : 1u << (vf - 32);
    uint64_t src = vf < 32 ? QM_PF_IFC_INT_SOURCE_P : QM_PF_IFC_INT_SOURCE_P_H;
    int rc = mig_hw_mailbox(&p->hw, QM_MB_CMD_DST, (uint16_t)vf, 0, 1, &msg);

    /* Ack whether or not the message could be read: the VF must not wait. */
    int ack = mig_hw_write32(&p->hw, src, bit);

    if (rc != 0 || ack != 0) {
        pf_msg_count(p, false);
        am_log_limited(&p->rl, AM_LOG_GUEST, PF_MSG_LOG, "VF %u: message could not be taken (%s)", vf,
               strerror(-(rc ? rc : ack)));
        return;
    }
    switch ((uint32_t)msg) {
    case QM_IFC_VF_GET_QOS:
        rc = pf_msg_send(p, vf,
                         QM_IFC_PF_SET_QOS |
                             (uint64_t)(PF_MSG_QOS_DEFAULT * PF_MSG_QOS_RATE) << 32);
        if (rc != 0) {
            pf_msg_count(p, false);
            am_log_limited(&p->rl, AM_LOG_GUEST, PF_MSG_LOG, "VF %u: QoS answer not taken (%s)", vf,
                   strerror(-rc));
            return;
        }
        break;
    case QM_IFC_VF_PREPARE_DONE:
    case QM_IFC_VF_START_DONE:
        break;
    case QM_IFC_VF_PREPARE_FAIL:
    case QM_IFC_VF_START_FAIL:
        am_log_limited(&p->rl, AM_LOG_GUEST, PF_MSG_LOG, "VF %u reports it failed to %s", vf,
               (uint32_t)msg == QM_IFC_VF_PREPARE_FAIL ? "stop" : "start");
        break;
    default:
        am_log_limited(&p->rl, AM_LOG_GUEST, PF_MSG_LOG, "VF %u sent unknown message 0x%llx", vf,
               (unsigned long long)msg);
        break;
    }
    pf_msg_count(p, true);
}

static void pf_msg_scan(struct mig_pf_msg *p)
{
    uint64_t pending = 0;

    if (mig_hw_read_pair(&p->hw, QM_PF_IFC_INT_SOURCE_P, &pending) != 0)
        return;
    for (unsigned vf = 1; vf < qm_dev_num_functions(p->hw.dev) && vf < 64; vf++)
        if (pending & (1ull << vf))
            pf_msg_serve(p, vf);
}

static void *pf_msg_main(void *arg)
{
    struct mig_pf_msg *p = arg;

    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->pending && !p->stop)
            pthread_cond_wait(&p->cond, &p->lock);
        if (p->stop)
            break;
        p->pending = false;
        pthread_mutex_unlock(&p->lock);
        pf_msg_scan(p);
        pthread_mutex_lock(&p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

int mig_pf_msg_create(struct qm_dev *dev, struct mig_pf_msg **out)
{
    struct mig_pf_msg *p;
    int rc;

    if (dev == NULL || out == NULL)
        return -EINVAL;
    p = calloc(1, sizeof(*p));
    if (p == NULL)
        return -ENOMEM;
    p->hw.dev = dev;
    p->hw.fn = 0;
    p->hw.regs = 0;
    rc = am_ratelimit_init(&p->rl, 10, 5000000000ull, NULL, NULL);
    if (rc != 0) {
        free(p);
        return rc;
    }
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    p->pending = true; /* messages left before we started */
    /* qm_cmd_init: the PF takes IFC interrupts. */
    rc = mig_hw_write32(&p->hw, QM_IFC_INT_MASK, 0);
    if (rc == 0)
        rc = -pthread_create(&p->thread, NULL, pf_msg_main, p);
    if (rc != 0) {
        pthread_cond_destroy(&p->cond);
        pthread_mutex_destroy(&p->lock);
        am_ratelimit_destroy(&p->rl);
        free(p);
        return rc;
    }
    *out = p;
    return 0;
}

void mig_pf_msg_irq(struct mig_pf_msg *p)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->lock);
    p->pending = true;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

void mig_pf_msg_stats(struct mig_pf_msg *p, uint64_t *answered, uint64_t *failed)
{
    pthread_mutex_lock(&p->lock);
    *answered = p->answered;
    *failed = p->failed;
    pthread_mutex_unlock(&p->lock);
}

void mig_pf_msg_destroy(struct mig_pf_msg *p)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->lock);
    p->stop = true;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
    pthread_join(p->thread, NULL);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
    am_ratelimit_destroy(&p->rl);
    free(p);
}
