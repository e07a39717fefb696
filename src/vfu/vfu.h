/* vfu: the vfio-user device server. One PF (a qm_dev) with N VFs; each VF is
 * served on its own UNIX socket (DIR/vf0.sock for function 1, ... mode
 * 0600), one client at a time, to VMMs such as QEMU 10.1+
 * (-device vfio-user-pci) or the accmig client library (vfu/client.h).
 *
 * Layers (libvfio-user style): vfu_msg.h (wire structs, codec), vfu_tran.h
 * (socket and buffer transports, message assembly), this header (the VF
 * device, a client session on it, and the server with its epoll loop).
 *
 * Contract
 * - Threads: vfu_server_run runs an epoll loop in the caller's thread that
 *   accepts clients and watches for a stop; each connected client gets a
 *   thread of its own that blocks reading its socket (the cheapest way to
 *   wait for the next message: one read, no poll). There is no server-wide
 *   lock: each VF has its own session lock (vfu_dev.h), held around each
 *   of that VF's handlers and its session open and close, so one VF's
 *   handlers run one at a time and handlers of different VFs run in
 *   parallel; one VF's long wait (a STOP_QP mailbox, a P2P poll, twin DMA)
 *   holds up only that VF's client. Below the session the device model and
 *   the VF's mig_dev have their own locks (qm.h, mig.h). The accept loop
 *   never waits for a handler: a client that reconnects while its old
 *   session is still ending (a handler in flight) is handed to that VF's
 *   thread, which serves it once the old session is closed. The device
 *   model's own worker threads raise interrupts (eventfd writes) and, for
 *   DMA maps without an fd, send DMA_READ/DMA_WRITE to the client over the
 *   twin socket; they never take a session lock, so a handler that waits
 *   for the device (mailbox, PAUSE_QM, unmap) cannot deadlock. A reply is
 *   sent after the session lock is dropped.
 * - Every message is validated before use (docs/usage.md lists the rules);
 *   an error reply carries a positive errno; nothing is half applied except
 *   REGION_WRITE_MULTI, whose writes before the failing one have happened
 *   (as on a CPU).
 * - A client that disconnects, dies, or breaks framing leaves its VF reset
 *   (qm_function_reset + mig_reset: RUNNING, streams ended, logging off),
 *   every DMA mapping removed, every interrupt eventfd closed, ready for
 *   the next client.
 * - Command gating by migration state: see vfu_cmd_allowed and
 *   docs/usage.md. Config space reads and writes work in every state.
 */
#ifndef ACCMIG_VFU_H
#define ACCMIG_VFU_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "mig/mig.h"
#include "qm/qm.h"
#include "vfu/vfu_tran.h"

/* ---- the device: a qm_dev and its VFs as vfio-user devices ---- */

struct vfu_device;
struct vfu_vf;

struct vfu_device_config {
    unsigned num_vfs;     /* 1..QM_MAX_VFS */
    unsigned qps_per_vf;  /* 2..QM_MAX_QPS_PER_VF */
    enum mig_hw_mode hw;  /* V4: revision 0x50, BAR2 64 KiB; V3: 0x30, 32 KiB visible */
    unsigned workers;     /* device job threads, >= 1 */
    uint64_t worker_cpus; /* qm_dev_config.worker_cpus: bit c = CPU c; 0 = anywhere */
    /* qm_dev_config.db_isolation: each VF's doorbells in its own BAR4 pages,
     * which a client may map (REGION_INFO hands out their memfd). false: the
     * old layout, doorbells in BAR2 only, no BAR4, QUE_ISO_CFG reads 0. */
    bool db_isolation;
    /* Who may map BAR4 (docs/doorbells.md: a mapped word holds one
     * doorbell, and a driver that stores an SQ and a CQ doorbell of one
     * queue before the device looks loses the first). COOPERATIVE (the
     * default): clients that say in VERSION that their guest waits for the
     * device ("accmig_cooperative_doorbells", the mini-VMM); others (QEMU
     * running the Linux driver) get BAR4 trapped. ALWAYS: every client;
     * NEVER: nobody. */
    enum vfu_db_mmap { VFU_DB_MMAP_COOPERATIVE = 0, VFU_DB_MMAP_ALWAYS, VFU_DB_MMAP_NEVER } db_mmap;
    /* qm_dev_config.engine: the engine behind the queues (ZIP by default);
     * the VFs' PCI device id is the engine's. */
    enum qm_engine_type engine;
};

/* Defaults: 4 VFs, 4 queue pairs each, v4, 2 workers on any CPU, doorbell
 * isolation on, the ZIP engine. */
void vfu_device_config_default(struct vfu_device_config *cfg);
/* Creates the qm_dev (its irq sink routes to the VFs' eventfds) and one
 * migration device per VF. -EINVAL for a bad config, -ENOMEM, or what
 * qm_dev_create / mig_dev_create return. */
int vfu_device_create(const struct vfu_device_config *cfg, struct vfu_device **out);
/* No session may be open. */
void vfu_device_destroy(struct vfu_device *d);
unsigned vfu_device_num_vfs(const struct vfu_device *d);
/* index 0..num_vfs-1 (PCI function index + 1); NULL when out of range. */
struct vfu_vf *vfu_device_vf(struct vfu_device *d, unsigned index);
/* For tests and reports: the model underneath. */
struct qm_dev *vfu_device_qm(struct vfu_device *d);
struct mig_dev *vfu_vf_mig(struct vfu_vf *vf);
unsigned vfu_vf_fn(const struct vfu_vf *vf);
/* Interrupts delivered to an eventfd / raised with no eventfd set. */
void vfu_vf_irq_counts(struct vfu_vf *vf, uint64_t *delivered, uint64_t *dropped);

/* Which commands a migration state admits (the gating table). Region
 * accesses are finer: config space always; BAR reads (BAR2 and BAR4 alike)
 * in every state but RESUMING and ERROR; BAR writes only in RUNNING,
 * RUNNING_P2P, PRE_COPY, PRE_COPY_P2P and STOP. A client's stores into its
 * mapping of BAR4 are not messages and pass no gate: the device model
 * decides what a doorbell does in each state (qm.h). */
bool vfu_cmd_allowed(unsigned cmd, enum vfio_mig_state state);

/* ---- a client session on one VF ---- */

struct vfu_session;

/* Opens a session of the VF over transport t (t is copied; a socket fd in it
 * stays the caller's). -EBUSY if the VF already has one, -ENOMEM. Open,
 * process, serve and close take the VF's session lock themselves; one
 * thread at a time drives a session. */
int vfu_session_open(struct vfu_vf *vf, const struct vfu_tran *t, struct vfu_session **out);
/* Handles the whole messages the transport has now (at most 32 per call).
 * Returns 0 when it would block or after 32 (call again when readable),
 * -ECONNRESET when the client closed, or another negative errno when the
 * session must end (framing broken, reply not deliverable). */
int vfu_session_process(struct vfu_session *s);
/* Serves the session in the calling thread until it must end: blocks in
 * the transport's reads (no lock held), handles each message with the VF's
 * session lock held (sends the reply after dropping it). Returns
 * -ECONNRESET when the client closed (or the socket was shut down), or
 * another negative errno as vfu_session_process does. The caller then
 * closes the session. */
int vfu_session_serve(struct vfu_session *s);
/* Ends the session: the VF is reset, unmapped and its eventfds closed
 * (the twin socket is shut down first, so DMA in flight fails fast). */
void vfu_session_close(struct vfu_session *s);

/* ---- the server ---- */

struct vfu_server;

/* Where the server listens: exactly one of dir, socket_path and
 * has_listen_fd (QEMU's vfio-user backend-program conventions: a backend
 * serves one device on --socket-path PATH or on an inherited --fd N). */
struct vfu_server_config {
    const char *dir; /* created (0700) if missing; sockets DIR/vf<i>.sock */
    /* One VF (dev.num_vfs 1) on a socket created at this path (mode 0600;
     * its directory must exist), removed again by destroy. */
    const char *socket_path;
    /* One VF (dev.num_vfs 1) on listen_fd, an already-listening AF_UNIX
     * stream socket (inherited from a parent). After a successful create
     * the server owns it (set close-on-exec, closed by destroy; its path,
     * if any, is the parent's and left alone); after a failed one it stays
     * the caller's. */
    bool has_listen_fd;
    int listen_fd;
    struct vfu_device_config dev;
    /* Also stop on SIGTERM/SIGINT through a signalfd; the caller must have
     * blocked both signals in every thread (pthread_sigmask). */
    bool handle_signals;
};

/* Creates the device and listening sockets. -EINVAL (not exactly one
 * place to listen, more than one VF without dir, a listen_fd that does not
 * listen), -EBADF / -ENOTSOCK / -EAFNOSUPPORT / -EPROTOTYPE (listen_fd not
 * open, not a socket, not AF_UNIX, not a stream), -ENAMETOOLONG, -EEXIST
 * (a non-socket file in the way), or a socket/epoll errno. */
int vfu_server_create(const struct vfu_server_config *cfg, struct vfu_server **out);
/* Serves until vfu_server_stop (or a handled signal). 0 on a clean stop,
 * or epoll's errno. Before it returns, every client is detached (its
 * socket shut down, its thread joined, its VF reset). */
int vfu_server_run(struct vfu_server *s);
/* Asks vfu_server_run to return; any thread, async-signal-safe. */
void vfu_server_stop(struct vfu_server *s);
/* Closes sessions (resetting their VFs), removes the sockets, frees all. */
void vfu_server_destroy(struct vfu_server *s);
/* The socket path of VF index i ("" when out of range, or when serving
 * an inherited listen_fd). */
const char *vfu_server_socket_path(const struct vfu_server *s, unsigned i);
struct vfu_device *vfu_server_device(struct vfu_server *s);

#endif
