/* conform/protocol: VERSION negotiation, every command's length, argsz,
 * flags and index rules, region and IRQ info, framing, fd accounting.
 * Rules and their sources are listed in docs/conform.md ("protocol"). */
#include <errno.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "common/common.h"
#include "conform/cf_int.h"

#define SPEC_HDR "vfio-user.rst, Header"
#define SPEC_VER "vfio-user.rst, VERSION"

static int eventfd_fd(void)
{
    return eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
}

/* ---- VERSION ---- */

/* A fresh connection that sends VERSION (major, minor, json of json_len
 * bytes as given: the NUL is the caller's). */
static void version_try(struct cf_ctx *x, uint16_t major, uint16_t minor, const char *json,
                        size_t json_len, struct cf_res *res)
{
    uint8_t buf[1024];
    struct vfu_version v = {.major = major, .minor = minor};

    cf_conn_close(&x->conn);
    memset(res, 0, sizeof(*res));
    if (cf_conn_open(&x->conn, x->opts->socket, x->timeout_ms) != 0) {
        res->out = CF_NOSEND;
        snprintf(res->why, sizeof(res->why), "cannot connect");
        return;
    }
    memcpy(buf, &v, sizeof(v));
    memcpy(buf + sizeof(v), json, json_len);
    cf_call(x, VFU_CMD_VERSION, buf, sizeof(v) + json_len, NULL, 0, res);
}

/* The reply's JSON object ("capabilities" inside) or NULL; why says what
 * was wrong with the bytes. */
static struct json_object *reply_json(const struct cf_res *res, char *why, size_t cap)
{
    const char *j = (const char *)res->rep.payload + sizeof(struct vfu_version);
    size_t n = res->rep.len - sizeof(struct vfu_version);
    struct json_object *o;

    if (n == 0) {
        snprintf(why, cap, "no JSON");
        return NULL;
    }
    if (j[n - 1] != 0 || memchr(j, 0, n - 1)) {
        snprintf(why, cap, "the JSON's NUL is not exactly at the end of the message");
        return NULL;
    }
    o = json_tokener_parse(j);
    if (!o || !json_object_is_type(o, json_type_object)) {
        snprintf(why, cap, "not a JSON object");
        if (o)
            json_object_put(o);
        return NULL;
    }
    return o;
}

static bool key_in(const char *key, const char *const *list)
{
    for (; *list; list++)
        if (strcmp(key, *list) == 0)
            return true;
    return false;
}

/* Checks a VERSION reply to a request that proposed the keys in proposed. */
static void version_reply_rules(struct cf_ctx *x, const char *tag, const struct cf_res *res,
                                uint16_t minor, size_t req_len, const char *const *proposed)
{
    char name[96], why[160];
    struct vfu_version v;
    struct json_object *o, *caps;

    if (res->rep.len < sizeof(v)) {
        snprintf(name, sizeof(name), "version/%s/reply-size", tag);
        cf_check(x, name, CF_FAIL, "%s: the reply has %zu bytes, less than major+minor", SPEC_VER,
                 res->rep.len);
        return;
    }
    memcpy(&v, res->rep.payload, sizeof(v));
    snprintf(name, sizeof(name), "version/%s/major", tag);
    cf_check(x, name, v.major == 0 ? CF_PASS : CF_FAIL,
             "%s: the reply's major must be the proposed one (0): %u", SPEC_VER, v.major);
    snprintf(name, sizeof(name), "version/%s/minor", tag);
    cf_check(x, name, v.minor <= minor ? CF_PASS : CF_FAIL,
             "%s: the reply's minor must be <= the proposed %u: %u", SPEC_VER, minor, v.minor);
    snprintf(name, sizeof(name), "version/%s/not-larger", tag);
    cf_check(x, name, res->rep.len <= req_len ? CF_PASS : CF_FAIL,
             "QEMU hw/vfio-user/proxy.c reads the reply into the request's buffer: %zu reply "
             "bytes for %zu request bytes",
             res->rep.len, req_len);
    if (res->rep.len == sizeof(v))
        return; /* no JSON: nothing more to check (the data is optional) */
    snprintf(name, sizeof(name), "version/%s/json", tag);
    o = reply_json(res, why, sizeof(why));
    if (!o) {
        cf_check(x, name, CF_FAIL, "%s: JSON NUL-terminated, ending the message: %s", SPEC_VER,
                 why);
        return;
    }
    cf_check(x, name, CF_PASS, "%s: a JSON object, its NUL ending the message", SPEC_VER);
    if (!json_object_object_get_ex(o, "capabilities", &caps)) {
        json_object_put(o);
        return;
    }
    snprintf(name, sizeof(name), "version/%s/caps-subset", tag);
    if (!json_object_is_type(caps, json_type_object)) {
        cf_check(x, name, CF_FAIL, "%s: \"capabilities\" is not an object", SPEC_VER);
        json_object_put(o);
        return;
    }
    {
        const char *extra = NULL;
        json_object_object_foreach(caps, key, val)
        {
            (void)val;
            if (!key_in(key, proposed) && !extra)
                extra = key;
        }
        cf_check(x, name, extra ? CF_FAIL : CF_PASS,
                 "%s: the capability list must be a subset of those proposed%s%s", SPEC_VER,
                 extra ? ": not proposed: " : "", extra ? extra : "");
    }
    /* Values QEMU accepts from a server (hw/vfio-user/proxy.c caps_parse). */
    struct {
        const char *key;
        uint64_t max;
    } bounds[] = {{"max_msg_fds", 16}, {"max_data_xfer_size", 64u << 20}, {"max_dma_maps", 65535}};
    for (size_t i = 0; i < AM_ARRAY_SIZE(bounds); i++) {
        struct json_object *val;
        if (!json_object_object_get_ex(caps, bounds[i].key, &val))
            continue;
        snprintf(name, sizeof(name), "version/%s/%s", tag, bounds[i].key);
        bool num = json_object_is_type(val, json_type_int);
        int64_t n = num ? json_object_get_int64(val) : -1;
        cf_check(x, name, num && n >= (strcmp(bounds[i].key, "max_msg_fds") ? 1 : 0) &&
                                  (uint64_t)n <= bounds[i].max
                              ? CF_PASS
                              : CF_FAIL,
                 "%s: a number QEMU accepts (<= %llu): %s", SPEC_VER,
                 (unsigned long long)bounds[i].max, json_object_to_json_string(val));
    }
    {
        struct json_object *val;
        if (json_object_object_get_ex(caps, "pgsizes", &val)) {
            snprintf(name, sizeof(name), "version/%s/pgsizes", tag);
            int64_t n = json_object_is_type(val, json_type_int) ? json_object_get_int64(val) : 0;
            cf_check(x, name, n > 0 && ((uint64_t)n & ~UINT64_C(4095)) ? CF_PASS : CF_FAIL,
                     "%s: page sizes or'ed together, one of them >= 4 KiB: %s", SPEC_VER,
                     json_object_to_json_string(val));
        }
        if (json_object_object_get_ex(caps, "write_multiple", &val)) {
            snprintf(name, sizeof(name), "version/%s/write_multiple", tag);
            cf_check(x, name, json_object_is_type(val, json_type_boolean) ? CF_PASS : CF_FAIL,
                     "%s: write_multiple is a boolean: %s", SPEC_VER,
                     json_object_to_json_string(val));
        }
    }
    json_object_put(o);
}

static void group_version(struct cf_ctx *x)
{
    static const char *const all[] = {"max_msg_fds",  "max_data_xfer_size", "max_dma_maps",
                                      "pgsizes",      "write_multiple",     "migration", NULL};
    static const char *const none[] = {NULL};
    static const char *const fds_only[] = {"max_msg_fds", NULL};
    static const char *const legacy[] = {"migration", NULL};
    static const char *const future[] = {"future_capability", NULL};
    static const char full[] =
        "{\"capabilities\":{\"max_msg_fds\":8,\"max_data_xfer_size\":1048576,"
        "\"max_dma_maps\":65535,\"pgsizes\":4096,\"write_multiple\":true,"
        "\"migration\":{\"pgsize\":4096,\"max_bitmap_size\":1048576}}}";
    struct cf_res res;
    struct vfu_device_info di = {.argsz = sizeof(di)};

    version_try(x, 0, 0, full, sizeof(full), &res);
    if (cf_expect_ok(x, "version/qemu-style", &res, SPEC_VER ": 0.0 with QEMU's capabilities"))
        version_reply_rules(x, "qemu-style", &res, 0, 4 + sizeof(full), all);
    cf_res_free(&res);

    version_try(x, 0, 7, full, sizeof(full), &res);
    if (cf_expect_ok(x, "version/higher-minor", &res,
                     SPEC_VER ": a minor the server may not know (0.7) is negotiated down"))
        version_reply_rules(x, "higher-minor", &res, 7, 4 + sizeof(full), all);
    cf_res_free(&res);

    version_try(x, 0, 0, "", 0, &res);
    if (cf_expect_ok(x, "version/no-json", &res, SPEC_VER ": the version data is optional"))
        version_reply_rules(x, "no-json", &res, 0, 4, none);
    cf_res_free(&res);

    {
        static const char j[] = "{}";
        version_try(x, 0, 0, j, sizeof(j), &res);
        if (cf_expect_ok(x, "version/empty-object", &res, SPEC_VER ": no capabilities"))
            version_reply_rules(x, "empty-object", &res, 0, 4 + sizeof(j), none);
        cf_res_free(&res);
    }
    {
        static const char j[] = "{\"capabilities\":{\"max_msg_fds\":4}}";
        version_try(x, 0, 0, j, sizeof(j), &res);
        if (cf_expect_ok(x, "version/one-cap", &res, SPEC_VER ": only max_msg_fds proposed"))
            version_reply_rules(x, "one-cap", &res, 0, 4 + sizeof(j), fds_only);
        cf_res_free(&res);
    }
    {
        static const char j[] = "{\"capabilities\":{\"max_msg_fds\":32}}";
        version_try(x, 0, 0, j, sizeof(j), &res);
        if (cf_expect_ok(x, "version/client-fds-32", &res,
                         SPEC_VER ": max_msg_fds is what the sender can receive (no upper bound)"))
            version_reply_rules(x, "client-fds-32", &res, 0, 4 + sizeof(j), fds_only);
        cf_res_free(&res);
    }
    {
        static const char j[] =
            "{\"capabilities\":{\"migration\":{\"pgsize\":4096,\"max_bitmap_size\":1048576}}}";
        version_try(x, 0, 0, j, sizeof(j), &res);
        if (cf_expect_ok(x, "version/legacy-migration", &res,
                         "QEMU 10.x still sends the legacy \"migration\" object"))
            version_reply_rules(x, "legacy-migration", &res, 0, 4 + sizeof(j), legacy);
        cf_res_free(&res);
    }
    {
        static const char j[] = "{\"capabilities\":{\"future_capability\":{\"x\":[1,2]}}}";
        version_try(x, 0, 0, j, sizeof(j), &res);
        if (cf_expect_ok(x, "version/unknown-cap", &res,
                         SPEC_VER ": minor versions add capabilities; unknown ones are not errors"))
            version_reply_rules(x, "unknown-cap", &res, 0, 4 + sizeof(j), future);
        cf_res_free(&res);
    }
    {
        static const char j[] = "{\"capabilities\":{\"max_msg_fds\":8}}"; /* no NUL sent */
        version_try(x, 0, 0, j, sizeof(j) - 1, &res);
        cf_expect_refused(x, "version/json-without-nul", &res,
                          SPEC_VER ": the version data includes its terminating NUL");
        cf_res_free(&res);
    }
    {
        static const char j[] = "{\"capabilities\":{\"max_msg_fds\":";
        version_try(x, 0, 0, j, sizeof(j), &res);
        cf_expect_refused(x, "version/json-malformed", &res, SPEC_VER ": JSON byte array");
        cf_res_free(&res);
    }
    {
        static const char j[] = "{\"capabilities\":{\"max_msg_fds\":\"eight\"}}";
        version_try(x, 0, 0, j, sizeof(j), &res);
        cf_expect_refused(x, "version/cap-wrong-type", &res, SPEC_VER ": max_msg_fds is a number");
        cf_res_free(&res);
    }
    {
        static const char j[] = "{\"capabilities\":{\"max_data_xfer_size\":0}}";
        version_try(x, 0, 0, j, sizeof(j), &res);
        cf_expect_refused(x, "version/max-xfer-zero", &res,
                          SPEC_VER ": max_data_xfer_size 0 leaves no transfer possible");
        cf_res_free(&res);
    }
    {
        static const char j[] = "{\"capabilities\":{\"max_msg_fds\":8}}";
        version_try(x, 1, 0, j, sizeof(j), &res);
        bool ok = res.out == CF_ERR || res.out == CF_CLOSED;
        if (res.out == CF_OK && res.rep.len >= 4)
            ok = am_le16(res.rep.payload) == 1; /* a server that speaks 1.x */
        char b[200];
        cf_check(x, "version/other-major", ok ? CF_PASS : CF_FAIL,
                 "%s: the reply's major must be the proposed one, or no session: %s", SPEC_VER,
                 cf_res_str(&res, b, sizeof(b)));
        cf_res_free(&res);
    }
    {
        static const char j[] = "{\"capabilities\":{\"max_msg_fds\":8}}";
        uint8_t two[2] = {0, 0};
        cf_conn_close(&x->conn);
        if (cf_conn_open(&x->conn, x->opts->socket, x->timeout_ms) == 0) {
            cf_call(x, VFU_CMD_VERSION, two, sizeof(two), NULL, 0, &res);
            cf_expect_refused(x, "version/truncated", &res,
                              SPEC_VER ": major and minor are 4 bytes; 2 is malformed");
            cf_res_free(&res);
        }
        (void)j;
    }
    /* Anything before VERSION. */
    cf_conn_close(&x->conn);
    if (cf_conn_open(&x->conn, x->opts->socket, x->timeout_ms) == 0) {
        cf_call(x, VFU_CMD_DEVICE_GET_INFO, &di, sizeof(di), NULL, 0, &res);
        cf_expect_refused(x, "version/must-be-first", &res,
                          SPEC_VER ": \"the client must send a VFIO_USER_VERSION message\" first");
        cf_res_free(&res);
    }
    /* VERSION twice. */
    if (cf_session(x) == 0) {
        uint8_t buf[64];
        static const char j[] = "{}";
        struct vfu_version v = {0, 0};
        memcpy(buf, &v, sizeof(v));
        memcpy(buf + sizeof(v), j, sizeof(j));
        cf_call(x, VFU_CMD_VERSION, buf, sizeof(v) + sizeof(j), NULL, 0, &res);
        cf_expect_refused(x, "version/twice", &res,
                          SPEC_VER ": negotiated once, upon establishing the connection");
        cf_res_free(&res);
    }
    cf_session(x);
}

/* ---- device, region and IRQ info ---- */

/* The argsz rules of every info reply (vfio.h: argsz in, the size needed
 * out; the reply never exceeds what the client said it takes). */
static void argsz_rules(struct cf_ctx *x, const char *name, const struct cf_res *res,
                        uint32_t req_argsz, size_t min)
{
    uint32_t argsz;

    if (res->rep.len < min) {
        cf_check(x, name, CF_FAIL, "reply payload %zu bytes, below the structure's %zu",
                 res->rep.len, min);
        return;
    }
    argsz = am_le32(res->rep.payload);
    if (res->rep.len > req_argsz)
        cf_check(x, name, CF_FAIL,
                 "vfio-user.rst: argsz is the maximum size of the reply payload: %zu bytes for "
                 "argsz %u",
                 res->rep.len, req_argsz);
    else if (res->rep.len > argsz)
        cf_check(x, name, CF_FAIL, "reply padded beyond its own argsz: %zu bytes, argsz %u",
                 res->rep.len, argsz);
    else if (argsz < min)
        cf_check(x, name, CF_FAIL, "reply argsz %u below the structure's %zu", argsz, min);
    else
        cf_check(x, name, CF_PASS, "argsz %u, %zu payload bytes, request argsz %u", argsz,
                 res->rep.len, req_argsz);
}

static void group_device_info(struct cf_ctx *x)
{
    struct vfu_device_info di = {.argsz = sizeof(di)};
    struct cf_res res;

    cf_call(x, VFU_CMD_DEVICE_GET_INFO, &di, sizeof(di), NULL, 0, &res);
    if (cf_expect_ok(x, "get-info/ok", &res, "vfio-user.rst DEVICE_GET_INFO"))
        argsz_rules(x, "get-info/argsz", &res, sizeof(di), sizeof(di));
    if (res.out == CF_OK && res.rep.len >= sizeof(di)) {
        memcpy(&di, res.rep.payload, sizeof(di));
        if (di.flags & VFU_DEVICE_FLAGS_PCI)
            cf_check(x, "get-info/pci-regions", di.num_regions > VFU_REGION_CONFIG ? CF_PASS : CF_FAIL,
                     "vfio.h: a PCI device has the config region at index 7: num_regions %u",
                     di.num_regions);
    }
    cf_res_free(&res);

    di = (struct vfu_device_info){.argsz = 64};
    cf_call(x, VFU_CMD_DEVICE_GET_INFO, &di, sizeof(di), NULL, 0, &res);
    if (cf_expect_ok(x, "get-info/large-argsz", &res, "argsz 64: room to spare is fine"))
        argsz_rules(x, "get-info/large-argsz-reply", &res, 64, sizeof(di));
    cf_res_free(&res);

    di = (struct vfu_device_info){.argsz = 8};
    cf_call(x, VFU_CMD_DEVICE_GET_INFO, &di, sizeof(di), NULL, 0, &res);
    cf_expect_refused(x, "get-info/argsz-small", &res,
                      "vfio.h VFIO_DEVICE_GET_INFO: argsz below minsz is EINVAL");
    cf_res_free(&res);

    di = (struct vfu_device_info){.argsz = sizeof(di)};
    cf_call(x, VFU_CMD_DEVICE_GET_INFO, &di, 12, NULL, 0, &res);
    cf_expect_refused(x, "get-info/short", &res, "payload shorter than the 16-byte structure");
    cf_res_free(&res);
}

/* The capability chain of a region info reply (vfio.h vfio_info_cap_header:
 * offsets from the start of the info, next 0 ends it). */
static void region_caps_rules(struct cf_ctx *x, uint32_t idx, const struct cf_res *res,
                              const struct vfu_region_info *ri)
{
    char name[96];
    uint32_t off = ri->cap_offset;
    size_t len = res->rep.len;
    unsigned n = 0;
    const char *bad = NULL;
    bool sparse_seen = false;

    snprintf(name, sizeof(name), "region/%u/caps-chain", idx);
    if (off < sizeof(*ri))
        bad = "cap_offset inside the info structure";
    while (!bad && off) {
        struct vfu_info_cap_header h;
        if (off + sizeof(h) > len) {
            bad = "a capability header beyond the reply";
            break;
        }
        memcpy(&h, res->rep.payload + off, sizeof(h));
        if (h.id == VFU_REGION_INFO_CAP_SPARSE_MMAP) {
            struct vfu_region_sparse_mmap sm;
            char aname[96];
            sparse_seen = true;
            if (off + sizeof(sm) > len) {
                bad = "a sparse mmap capability cut short";
                break;
            }
            memcpy(&sm, res->rep.payload + off, sizeof(sm));
            if (sm.nr_areas > (len - off - sizeof(sm)) / sizeof(struct vfu_sparse_mmap_area)) {
                bad = "nr_areas beyond the reply";
                break;
            }
            snprintf(aname, sizeof(aname), "region/%u/sparse-areas", idx);
            const char *abad = NULL;
            for (uint32_t a = 0; a < sm.nr_areas && !abad; a++) {
                struct vfu_sparse_mmap_area ar;
                memcpy(&ar, res->rep.payload + off + sizeof(sm) + a * sizeof(ar), sizeof(ar));
                if (!am_range_ok(ar.offset, ar.size, ri->size))
                    abad = "an area beyond the region";
                else if ((ar.offset | ar.size) & 4095)
                    abad = "an area not page aligned";
            }
            cf_check(x, aname, abad ? CF_FAIL : CF_PASS,
                     "vfio.h VFIO_REGION_INFO_CAP_SPARSE_MMAP: %u area(s) inside the region, page "
                     "aligned%s%s",
                     sm.nr_areas, abad ? ": " : "", abad ? abad : "");
        }
        if (h.next && h.next <= off) {
            bad = "next does not move forward (a loop)";
            break;
        }
        off = h.next;
        if (++n > 64) {
            bad = "more than 64 capabilities";
            break;
        }
    }
    cf_check(x, name, bad ? CF_FAIL : CF_PASS,
             "vfio.h vfio_info_cap_header chain inside the reply: %u cap(s)%s%s%s", n,
             sparse_seen ? " incl. sparse mmap" : "", bad ? ": " : "", bad ? bad : "");
}

static void try_mmap(struct cf_ctx *x, uint32_t idx, int fd, const struct vfu_region_info *ri,
                     const struct cf_region *r)
{
    char name[96];
    unsigned n = r->nr_areas ? r->nr_areas : 1;
    const char *bad = NULL;

    snprintf(name, sizeof(name), "region/%u/mmap", idx);
    for (unsigned a = 0; a < n && !bad; a++) {
        uint64_t off = r->nr_areas ? r->areas[a].offset : 0;
        uint64_t size = r->nr_areas ? r->areas[a].size : ri->size;
        void *p;
        if (!size)
            continue;
        p = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, (off_t)(ri->offset + off));
        if (p == MAP_FAILED) {
            bad = "mmap of an area failed";
            continue;
        }
        munmap(p, size);
    }
    cf_check(x, name, bad ? CF_FAIL : CF_PASS,
             "vfio-user.rst DEVICE_GET_REGION_INFO: the fd of an mmap-able region maps each area "
             "at offset + area offset%s%s",
             bad ? ": " : "", bad ? bad : "");
}

static void group_region_info(struct cf_ctx *x)
{
    struct cf_device *d = &x->dev;
    struct cf_res res;
    char name[96];

    if (!d->have_info) {
        cf_check(x, "region/all", CF_SKIP, "DEVICE_GET_INFO did not answer");
        return;
    }
    for (uint32_t i = 0; i < d->nregions; i++) {
        struct vfu_region_info ri = {.argsz = sizeof(ri), .index = i}, got;
        uint32_t need;

        cf_call(x, VFU_CMD_DEVICE_GET_REGION_INFO, &ri, sizeof(ri), NULL, 0, &res);
        snprintf(name, sizeof(name), "region/%u/info", i);
        if (!cf_expect_ok(x, name, &res, "vfio-user.rst DEVICE_GET_REGION_INFO of an index below "
                                         "num_regions")) {
            cf_res_free(&res);
            continue;
        }
        snprintf(name, sizeof(name), "region/%u/argsz", i);
        argsz_rules(x, name, &res, sizeof(ri), sizeof(ri));
        if (res.rep.len < sizeof(got)) {
            cf_res_free(&res);
            continue;
        }
        memcpy(&got, res.rep.payload, sizeof(got));
        need = got.argsz;
        snprintf(name, sizeof(name), "region/%u/index", i);
        cf_check(x, name, got.index == i ? CF_PASS : CF_FAIL, "the reply names index %u: %u", i,
                 got.index);
        if (got.size == 0) {
            snprintf(name, sizeof(name), "region/%u/absent", i);
            cf_check(x, name, !(got.flags & VFU_REGION_FLAG_MMAP) && res.rep.nfds == 0 ? CF_PASS
                                                                                      : CF_FAIL,
                     "a region of size 0 is absent: no MMAP, no fd (flags 0x%x, %zu fd)", got.flags,
                     res.rep.nfds);
        }
        if (i < 6 && got.size) {
            snprintf(name, sizeof(name), "region/%u/bar-size", i);
            cf_check(x, name, AM_IS_POW2(got.size) ? CF_PASS : CF_FAIL,
                     "PCI Local Bus 6.2.5.1: a BAR's size is a power of two: 0x%llx",
                     (unsigned long long)got.size);
        }
        if (i == VFU_REGION_CONFIG && (d->info.flags & VFU_DEVICE_FLAGS_PCI)) {
            cf_check(x, "region/7/config-size",
                     got.size == 256 || got.size == 4096 ? CF_PASS : CF_FAIL,
                     "PCI config space is 256 bytes, or 4 KiB for PCIe: %llu",
                     (unsigned long long)got.size);
        }
        if (!(got.flags & VFU_REGION_FLAG_MMAP) && res.rep.nfds) {
            snprintf(name, sizeof(name), "region/%u/fd-without-mmap", i);
            cf_check(x, name, CF_FAIL, "an fd came with a region that is not mmap-able");
        }
        if ((got.flags & VFU_REGION_FLAG_CAPS) && need <= sizeof(ri)) {
            snprintf(name, sizeof(name), "region/%u/caps-argsz", i);
            cf_check(x, name, CF_FAIL, "CAPS set but argsz %u leaves no room for them", need);
        }
        cf_res_free(&res);

        /* Ask again with the argsz the server said it needs: the full
         * reply, caps and fd included. */
        if (need > sizeof(ri) && need <= 65536) {
            ri.argsz = need;
            cf_call(x, VFU_CMD_DEVICE_GET_REGION_INFO, &ri, sizeof(ri), NULL, 0, &res);
            snprintf(name, sizeof(name), "region/%u/full", i);
            if (cf_expect_ok(x, name, &res, "asked again with the argsz the reply gave")) {
                snprintf(name, sizeof(name), "region/%u/full-argsz", i);
                argsz_rules(x, name, &res, need, sizeof(ri));
                if (res.rep.len >= sizeof(got)) {
                    memcpy(&got, res.rep.payload, sizeof(got));
                    snprintf(name, sizeof(name), "region/%u/caps-present", i);
                    cf_check(x, name, got.flags & VFU_REGION_FLAG_CAPS ? CF_PASS : CF_FAIL,
                             "vfio.h: a larger argsz is needed only for capabilities: flags 0x%x",
                             got.flags);
                    if (got.flags & VFU_REGION_FLAG_CAPS)
                        region_caps_rules(x, i, &res, &got);
                }
            }
        }
        if (got.flags & VFU_REGION_FLAG_MMAP) {
            snprintf(name, sizeof(name), "region/%u/mmap-fd", i);
            bool fd = res.out == CF_OK && res.rep.nfds == 1;
            cf_check(x, name, fd ? CF_PASS : CF_FAIL,
                     "vfio-user.rst DEVICE_GET_REGION_INFO: an mmap-able region's reply carries "
                     "its fd: %zu fd(s)",
                     res.out == CF_OK ? res.rep.nfds : 0);
            if (fd)
                try_mmap(x, i, res.rep.fds[0], &got, &d->regions[i]);
        }
        cf_res_free(&res);
    }
    {
        struct vfu_region_info ri = {.argsz = sizeof(ri), .index = d->info.num_regions};
        cf_call(x, VFU_CMD_DEVICE_GET_REGION_INFO, &ri, sizeof(ri), NULL, 0, &res);
        cf_expect_refused(x, "region/index-num_regions", &res, "an index >= num_regions");
        cf_res_free(&res);
        ri.index = UINT32_MAX;
        cf_call(x, VFU_CMD_DEVICE_GET_REGION_INFO, &ri, sizeof(ri), NULL, 0, &res);
        cf_expect_refused(x, "region/index-max", &res, "index 0xffffffff");
        cf_res_free(&res);
        ri = (struct vfu_region_info){.argsz = 16, .index = 0};
        cf_call(x, VFU_CMD_DEVICE_GET_REGION_INFO, &ri, sizeof(ri), NULL, 0, &res);
        cf_expect_refused(x, "region/argsz-small", &res, "argsz 16 below the 32-byte structure");
        cf_res_free(&res);
        ri = (struct vfu_region_info){.argsz = sizeof(ri), .index = 0};
        cf_call(x, VFU_CMD_DEVICE_GET_REGION_INFO, &ri, 24, NULL, 0, &res);
        cf_expect_refused(x, "region/short", &res, "payload shorter than the 32-byte structure");
        cf_res_free(&res);
    }
}

static void region_read(struct cf_ctx *x, uint32_t region, uint64_t off, uint32_t count,
                        struct cf_res *res)
{
    struct vfu_region_access a = {.offset = off, .region = region, .count = count};
    cf_call(x, VFU_CMD_REGION_READ, &a, sizeof(a), NULL, 0, res);
}

static void group_region_access(struct cf_ctx *x)
{
    struct cf_device *d = &x->dev;
    struct cf_res res;
    char name[96];

    for (uint32_t i = 0; i < d->nregions; i++) {
        const struct vfu_region_info *ri = &d->regions[i].info;
        if (!d->regions[i].have)
            continue;
        if (ri->size == 0) {
            region_read(x, i, 0, 4, &res);
            snprintf(name, sizeof(name), "region/%u/read-absent", i);
            cf_expect_refused(x, name, &res, "a read of a region of size 0");
            cf_res_free(&res);
            continue;
        }
        region_read(x, i, ri->size, 4, &res);
        snprintf(name, sizeof(name), "region/%u/read-at-end", i);
        cf_expect_refused(x, name, &res, "a read starting at the region's size");
        cf_res_free(&res);
        if (ri->size >= 4) {
            region_read(x, i, ri->size - 2, 4, &res);
            snprintf(name, sizeof(name), "region/%u/read-across-end", i);
            cf_expect_refused(x, name, &res, "a read that crosses the region's end");
            cf_res_free(&res);
        }
        region_read(x, i, UINT64_MAX - 1, 4, &res);
        snprintf(name, sizeof(name), "region/%u/read-wrap", i);
        cf_expect_refused(x, name, &res, "offset + count wraps");
        cf_res_free(&res);
        {
            struct vfu_region_access a = {.offset = ri->size, .region = i, .count = 4};
            uint8_t buf[sizeof(a) + 4] = {0};
            memcpy(buf, &a, sizeof(a));
            cf_call(x, VFU_CMD_REGION_WRITE, buf, sizeof(buf), NULL, 0, &res);
            snprintf(name, sizeof(name), "region/%u/write-at-end", i);
            cf_expect_refused(x, name, &res, "a write starting at the region's size");
            cf_res_free(&res);
        }
    }
    if (d->nregions > VFU_REGION_CONFIG && d->regions[VFU_REGION_CONFIG].info.size >= 4) {
        uint64_t size = d->regions[VFU_REGION_CONFIG].info.size;
        struct vfu_region_access a;

        region_read(x, VFU_REGION_CONFIG, 0, 4, &res);
        if (cf_expect_ok(x, "config/read", &res, "REGION_READ of the vendor/device id")) {
            bool ok = res.rep.len == sizeof(a) + 4;
            if (ok) {
                memcpy(&a, res.rep.payload, sizeof(a));
                ok = a.offset == 0 && a.region == VFU_REGION_CONFIG && a.count == 4;
            }
            cf_check(x, "config/read-reply", ok ? CF_PASS : CF_FAIL,
                     "vfio-user.rst REGION_READ reply: offset, region, count echoed, then count "
                     "bytes: %zu bytes",
                     res.rep.len);
        }
        cf_res_free(&res);
        region_read(x, VFU_REGION_CONFIG, size - 4, 4, &res);
        cf_expect_ok(x, "config/read-last-dword", &res,
                     "the last dword of the size REGION_INFO gave is readable");
        cf_res_free(&res);
        region_read(x, VFU_REGION_CONFIG, 0, (uint32_t)AM_MIN(x->dev.max_xfer + 1, UINT32_MAX),
                    &res);
        cf_expect_refused(x, "config/read-above-max-xfer", &res,
                          "vfio-user.rst: count must not exceed max_data_xfer_size");
        cf_res_free(&res);
        {
            uint8_t buf[sizeof(a) + 2] = {0};
            a = (struct vfu_region_access){.offset = 0, .region = VFU_REGION_CONFIG, .count = 4};
            memcpy(buf, &a, sizeof(a));
            cf_call(x, VFU_CMD_REGION_WRITE, buf, sizeof(buf), NULL, 0, &res);
            cf_expect_refused(x, "config/write-short-data", &res,
                              "REGION_WRITE with count 4 and 2 data bytes");
            cf_res_free(&res);
        }
        {
            uint8_t buf[12] = {0};
            cf_call(x, VFU_CMD_REGION_READ, buf, sizeof(buf), NULL, 0, &res);
            cf_expect_refused(x, "config/read-short", &res, "REGION_READ payload of 12 bytes");
            cf_res_free(&res);
        }
    }
    region_read(x, d->info.num_regions, 0, 4, &res);
    cf_expect_refused(x, "region/read-bad-index", &res, "REGION_READ of index num_regions");
    cf_res_free(&res);
}

static void group_irqs(struct cf_ctx *x)
{
    struct cf_device *d = &x->dev;
    struct cf_res res;
    char name[96];
    int msi = -1;

    for (uint32_t i = 0; i < d->nirqs; i++) {
        struct vfu_irq_info ii = {.argsz = sizeof(ii), .index = i}, got;
        cf_call(x, VFU_CMD_DEVICE_GET_IRQ_INFO, &ii, sizeof(ii), NULL, 0, &res);
        snprintf(name, sizeof(name), "irq/%u/info", i);
        if (cf_expect_ok(x, name, &res, "vfio-user.rst DEVICE_GET_IRQ_INFO below num_irqs")) {
            snprintf(name, sizeof(name), "irq/%u/argsz", i);
            argsz_rules(x, name, &res, sizeof(ii), sizeof(ii));
            if (res.rep.len >= sizeof(got)) {
                memcpy(&got, res.rep.payload, sizeof(got));
                snprintf(name, sizeof(name), "irq/%u/index", i);
                cf_check(x, name, got.index == i ? CF_PASS : CF_FAIL, "index echoed: %u",
                         got.index);
                if (got.count && (got.flags & VFU_IRQ_INFO_EVENTFD) && msi < 0 && i != 0)
                    msi = (int)i;
            }
        }
        cf_res_free(&res);
    }
    {
        struct vfu_irq_info ii = {.argsz = sizeof(ii), .index = d->info.num_irqs};
        cf_call(x, VFU_CMD_DEVICE_GET_IRQ_INFO, &ii, sizeof(ii), NULL, 0, &res);
        cf_expect_refused(x, "irq/index-num_irqs", &res, "an index >= num_irqs");
        cf_res_free(&res);
        ii = (struct vfu_irq_info){.argsz = 8, .index = 0};
        cf_call(x, VFU_CMD_DEVICE_GET_IRQ_INFO, &ii, sizeof(ii), NULL, 0, &res);
        cf_expect_refused(x, "irq/argsz-small", &res, "argsz 8 below the 16-byte structure");
        cf_res_free(&res);
    }
    /* SET_IRQS validation (vfio_set_irqs_validate_and_prepare). */
    struct {
        const char *name;
        uint32_t flags, index, start, count;
        const char *rule;
    } bad[] = {
        {"set-irqs/bad-index", VFU_IRQ_SET_DATA_NONE | VFU_IRQ_SET_ACTION_TRIGGER,
         d->info.num_irqs, 0, 1, "index >= num_irqs"},
        {"set-irqs/two-data-types",
         VFU_IRQ_SET_DATA_NONE | VFU_IRQ_SET_DATA_BOOL | VFU_IRQ_SET_ACTION_TRIGGER,
         msi < 0 ? 1u : (uint32_t)msi, 0, 1, "exactly one data type"},
        {"set-irqs/two-actions",
         VFU_IRQ_SET_DATA_NONE | VFU_IRQ_SET_ACTION_TRIGGER | VFU_IRQ_SET_ACTION_MASK,
         msi < 0 ? 1u : (uint32_t)msi, 0, 1, "exactly one action"},
        {"set-irqs/no-action", VFU_IRQ_SET_DATA_NONE, msi < 0 ? 1u : (uint32_t)msi, 0, 1,
         "an action is required"},
        {"set-irqs/unknown-flags", VFU_IRQ_SET_DATA_NONE | VFU_IRQ_SET_ACTION_TRIGGER | (1u << 9),
         msi < 0 ? 1u : (uint32_t)msi, 0, 1, "flags beyond the defined bits"},
    };
    for (size_t i = 0; i < AM_ARRAY_SIZE(bad); i++) {
        struct vfu_irq_set s = {.argsz = sizeof(s), .flags = bad[i].flags, .index = bad[i].index,
                                .start = bad[i].start, .count = bad[i].count};
        cf_call(x, VFU_CMD_DEVICE_SET_IRQS, &s, sizeof(s), NULL, 0, &res);
        cf_expect_refused(x, bad[i].name, &res, bad[i].rule);
        cf_res_free(&res);
    }
    if (msi < 0) {
        cf_check(x, "set-irqs/eventfd", CF_SKIP, "no IRQ index with vectors and EVENTFD");
        return;
    }
    uint32_t n = d->irqs[msi].count;
    {
        struct vfu_irq_set s = {.argsz = sizeof(s),
                                .flags = VFU_IRQ_SET_DATA_NONE | VFU_IRQ_SET_ACTION_TRIGGER,
                                .index = (uint32_t)msi, .start = n, .count = 1};
        cf_call(x, VFU_CMD_DEVICE_SET_IRQS, &s, sizeof(s), NULL, 0, &res);
        cf_expect_refused(x, "set-irqs/start-beyond-count", &res,
                          "vfio_set_irqs_validate_and_prepare: start + count beyond the vectors");
        cf_res_free(&res);
        s.start = 1;
        s.count = UINT32_MAX;
        cf_call(x, VFU_CMD_DEVICE_SET_IRQS, &s, sizeof(s), NULL, 0, &res);
        cf_expect_refused(x, "set-irqs/count-wraps", &res, "start + count wraps");
        cf_res_free(&res);
    }
    {
        uint8_t buf[sizeof(struct vfu_irq_set) + 1] = {0};
        struct vfu_irq_set s = {.argsz = sizeof(buf),
                                .flags = VFU_IRQ_SET_DATA_BOOL | VFU_IRQ_SET_ACTION_TRIGGER,
                                .index = (uint32_t)msi, .start = 0, .count = AM_MIN(n, 2u)};
        memcpy(buf, &s, sizeof(s));
        if (s.count == 2) {
            cf_call(x, VFU_CMD_DEVICE_SET_IRQS, buf, sizeof(buf), NULL, 0, &res);
            cf_expect_refused(x, "set-irqs/bool-short", &res,
                              "DATA_BOOL carries count bytes: 1 byte for count 2");
            cf_res_free(&res);
        }
    }
    {
        int p[2];
        struct vfu_irq_set s = {.argsz = sizeof(s),
                                .flags = VFU_IRQ_SET_DATA_EVENTFD | VFU_IRQ_SET_ACTION_TRIGGER,
                                .index = (uint32_t)msi, .start = 0, .count = AM_MIN(n, 2u)};
        if (s.count == 2 && cf_pipe(p) == 0) {
            cf_call(x, VFU_CMD_DEVICE_SET_IRQS, &s, sizeof(s), &p[1], 1, &res);
            close(p[1]);
            cf_expect_refused(x, "set-irqs/fd-count-mismatch", &res,
                              "DATA_EVENTFD with one fd for count 2");
            cf_check(x, "set-irqs/fd-count-mismatch-closed",
                     cf_fd_released(p[0], 2000) ? CF_PASS : CF_FAIL,
                     "descriptors of a refused SET_IRQS are closed (no leak)");
            cf_res_free(&res);
            close(p[0]);
        }
    }
    {
        int efd[16];
        uint32_t k = AM_MIN(n, AM_MIN(16u, (uint32_t)x->dev.max_msg_fds));
        struct vfu_irq_set s = {.argsz = sizeof(s),
                                .flags = VFU_IRQ_SET_DATA_EVENTFD | VFU_IRQ_SET_ACTION_TRIGGER,
                                .index = (uint32_t)msi, .start = 0, .count = k};
        uint32_t made = 0;
        for (; made < k; made++) {
            efd[made] = eventfd_fd();
            if (efd[made] < 0)
                break;
        }
        if (made == k && k) {
            cf_call(x, VFU_CMD_DEVICE_SET_IRQS, &s, sizeof(s), efd, k, &res);
            cf_expect_ok(x, "set-irqs/eventfd-assign", &res, "eventfds for the first vectors");
            cf_res_free(&res);
            s = (struct vfu_irq_set){.argsz = sizeof(s),
                                     .flags = VFU_IRQ_SET_DATA_NONE | VFU_IRQ_SET_ACTION_TRIGGER,
                                     .index = (uint32_t)msi, .start = 0, .count = 0};
            cf_call(x, VFU_CMD_DEVICE_SET_IRQS, &s, sizeof(s), NULL, 0, &res);
            cf_expect_ok(x, "set-irqs/disable-all", &res,
                         "vfio.h VFIO_DEVICE_SET_IRQS: DATA_NONE, TRIGGER, count 0 disables the "
                         "index");
            cf_res_free(&res);
        }
        for (uint32_t i = 0; i < made; i++)
            close(efd[i]);
    }
}

static void group_features(struct cf_ctx *x)
{
    struct cf_res res;

    cf_feature(x, VFU_FEATURE_GET | 0x7ff0u, 64, NULL, 0, &res);
    cf_expect_refused(x, "feature/unknown", &res, "a feature index nobody defines");
    cf_res_free(&res);
    cf_feature(x, VFU_FEATURE_GET | CF_FEAT_MIGRATION | (1u << 20), 64, NULL, 0, &res);
    cf_expect_refused(x, "feature/unknown-flag-bits", &res,
                      "vfio_ioctl_device_feature: flags beyond MASK|GET|SET|PROBE are EINVAL");
    cf_res_free(&res);
    {
        uint8_t b[4] = {0};
        cf_call(x, VFU_CMD_DEVICE_FEATURE, b, sizeof(b), NULL, 0, &res);
        cf_expect_refused(x, "feature/short", &res, "payload shorter than argsz + flags");
        cf_res_free(&res);
    }
    if (!x->dev.mig) {
        cf_check(x, "feature/migration", CF_SKIP, "the device offers no migration feature");
        return;
    }
    cf_feature(x, VFU_FEATURE_GET | VFU_FEATURE_SET | CF_FEAT_MIGRATION, 64, NULL, 0, &res);
    cf_expect_refused(x, "feature/get-and-set", &res,
                      "vfio-user.rst: GET and SET are mutually exclusive, except with PROBE");
    cf_res_free(&res);
    cf_feature(x, VFU_FEATURE_SET | CF_FEAT_MIGRATION, 16, "\0\0\0\0\0\0\0\0", 8, &res);
    cf_expect_refused(x, "feature/migration-set", &res, "MIGRATION supports GET only");
    cf_res_free(&res);
    cf_feature(x, VFU_FEATURE_GET | CF_FEAT_MIGRATION, sizeof(struct vfu_feature), NULL, 0, &res);
    cf_expect_refused(x, "feature/get-argsz-small", &res,
                      "vfio_check_feature: argsz without room for the data is EINVAL");
    cf_res_free(&res);
    cf_feature(x, VFU_FEATURE_GET | VFU_FEATURE_PROBE | CF_FEAT_MIGRATION,
               sizeof(struct vfu_feature), NULL, 0, &res);
    if (cf_expect_ok(x, "feature/probe", &res, "PROBE of a feature the device has")) {
        struct vfu_feature f = {0};
        if (res.rep.len >= sizeof(f))
            memcpy(&f, res.rep.payload, sizeof(f));
        cf_check(x, "feature/probe-reply",
                 res.rep.len == sizeof(f) &&
                         f.flags == (VFU_FEATURE_GET | VFU_FEATURE_PROBE | CF_FEAT_MIGRATION)
                     ? CF_PASS
                     : CF_FAIL,
                 "vfio-user.rst DEVICE_FEATURE: the reply to a probe is the request: %zu bytes, "
                 "flags 0x%x",
                 res.rep.len, f.flags);
    }
    cf_res_free(&res);
    cf_feature(x, VFU_FEATURE_GET | CF_FEAT_MIGRATION, 64, NULL, 0, &res);
    if (cf_expect_ok(x, "feature/migration-get", &res, "GET MIGRATION")) {
        uint32_t argsz = res.rep.len >= 4 ? am_le32(res.rep.payload) : 0;
        cf_check(x, "feature/migration-get-argsz",
                 res.rep.len == sizeof(struct vfu_feature) + 8 && argsz == res.rep.len ? CF_PASS
                                                                                      : CF_FAIL,
                 "vfio-user.rst DEVICE_FEATURE: GET adds the data's length to argsz: argsz %u, %zu "
                 "bytes (16 expected)",
                 argsz, res.rep.len);
    }
    cf_res_free(&res);
}

static void group_misc(struct cf_ctx *x)
{
    struct cf_res res;

    {
        struct vfu_region_io_fds r = {.argsz = sizeof(r), .index = x->dev.info.num_regions};
        cf_call(x, VFU_CMD_DEVICE_GET_REGION_IO_FDS, &r, sizeof(r), NULL, 0, &res);
        cf_expect_refused(x, "io-fds/bad-index", &res, "REGION_IO_FDS of index num_regions");
        cf_res_free(&res);
        r = (struct vfu_region_io_fds){.argsz = sizeof(r), .flags = 1, .index = 0};
        cf_call(x, VFU_CMD_DEVICE_GET_REGION_IO_FDS, &r, sizeof(r), NULL, 0, &res);
        cf_expect_refused(x, "io-fds/flags", &res,
                          "vfio-user.rst REGION_IO_FDS: flags must be zero");
        cf_res_free(&res);
    }
    {
        struct vfu_dma_access a = {.addr = 0, .count = 8};
        cf_call(x, VFU_CMD_DMA_READ, &a, sizeof(a), NULL, 0, &res);
        cf_expect_refused(x, "dma-read-from-client", &res,
                          "vfio-user.rst: DMA_READ goes from server to client");
        cf_res_free(&res);
    }
    if (x->dev.info.flags & VFU_DEVICE_FLAGS_RESET) {
        cf_call(x, VFU_CMD_DEVICE_RESET, NULL, 0, NULL, 0, &res);
        cf_expect_ok(x, "reset", &res, "DEVICE_RESET of a device that says FLAGS_RESET");
        cf_res_free(&res);
    }
    for (unsigned cmd = 0; cmd < 3; cmd++) {
        static const uint16_t cmds[] = {0, 14, 0xffff};
        static const char *const names[] = {"unknown-command/0", "unknown-command/14",
                                            "unknown-command/65535"};
        uint8_t b[16] = {0};
        cf_call(x, cmds[cmd], b, sizeof(b), NULL, 0, &res);
        cf_expect_refused(x, names[cmd], &res, "a command the spec does not define");
        cf_res_free(&res);
    }
    {
        struct vfu_device_info di = {.argsz = sizeof(di)};
        cf_call(x, VFU_CMD_DEVICE_GET_INFO, &di, sizeof(di), NULL, 0, &res);
        cf_expect_ok(x, "unknown-command/then-usable", &res,
                     "an error reply leaves the session usable");
        cf_res_free(&res);
    }
}

/* ---- framing ---- */

static void framing_bad_header(struct cf_ctx *x, const char *name, uint32_t size, uint32_t flags,
                               const char *rule)
{
    struct vfu_hdr h = {.msg_id = 0x4242, .cmd = VFU_CMD_DEVICE_GET_INFO, .size = size,
                        .flags = flags};
    struct vfu_device_info di = {.argsz = sizeof(di)};
    uint8_t buf[sizeof(h) + sizeof(di)];
    struct cf_res res;

    /* The bytes the header announces follow when that is a sane amount,
     * so a server (or proxy) that reads the whole message first is not
     * left waiting. */
    memcpy(buf, &h, sizeof(h));
    memcpy(buf + sizeof(h), &di, sizeof(di));
    cf_ensure(x);
    cf_call_raw(x, buf, size == sizeof(buf) ? sizeof(buf) : sizeof(h), NULL, 0, &res);
    cf_expect_refused(x, name, &res, rule);
    cf_res_free(&res);
    cf_conn_close(&x->conn); /* the stream is not to be trusted after this */
    cf_alive(x, name);
}

static void group_framing(struct cf_ctx *x)
{
    struct vfu_device_info di = {.argsz = sizeof(di)};
    struct cf_msg m;
    uint8_t buf[4 * (sizeof(struct vfu_hdr) + sizeof(di))];
    struct cf_res res;
    bool ok;

    framing_bad_header(x, "framing/size-below-header", 8, 0, SPEC_HDR ": size includes the header");
    framing_bad_header(x, "framing/size-4GiB", UINT32_MAX, 0,
                       "a message far above max_data_xfer_size");
    framing_bad_header(x, "framing/type-reserved", sizeof(struct vfu_hdr) + sizeof(di), 5,
                       SPEC_HDR ": type 0 command, 1 reply");

    /* Pipelined: four commands in one write, four replies in order. */
    cf_session(x);
    for (unsigned i = 0; i < 4; i++) {
        struct vfu_hdr h = {.msg_id = (uint16_t)(100 + i), .cmd = VFU_CMD_DEVICE_GET_INFO,
                            .size = sizeof(h) + sizeof(di)};
        memcpy(buf + i * (sizeof(h) + sizeof(di)), &h, sizeof(h));
        memcpy(buf + i * (sizeof(h) + sizeof(di)) + sizeof(h), &di, sizeof(di));
    }
    ok = cf_send_raw(&x->conn, buf, sizeof(buf), NULL, 0) == 0;
    for (unsigned i = 0; i < 4 && ok; i++) {
        ok = cf_recv(&x->conn, &m, x->timeout_ms) == 0 && m.hdr.msg_id == 100 + i &&
             (m.hdr.flags & VFU_HDR_TYPE_MASK) == VFU_HDR_TYPE_REPLY;
        cf_msg_free(&m);
    }
    cf_check(x, "framing/pipelined", ok ? CF_PASS : CF_FAIL,
             SPEC_HDR ": commands may be pipelined; each reply echoes its command's msg_id, in "
                      "order");
    /* The same msg_id twice: both answered. */
    for (unsigned i = 0; i < 2; i++) {
        struct vfu_hdr h = {.msg_id = 7, .cmd = VFU_CMD_DEVICE_GET_INFO,
                            .size = sizeof(h) + sizeof(di)};
        memcpy(buf + i * (sizeof(h) + sizeof(di)), &h, sizeof(h));
        memcpy(buf + i * (sizeof(h) + sizeof(di)) + sizeof(h), &di, sizeof(di));
    }
    ok = x->conn.fd >= 0 &&
         cf_send_raw(&x->conn, buf, 2 * (sizeof(struct vfu_hdr) + sizeof(di)), NULL, 0) == 0;
    for (unsigned i = 0; i < 2 && ok; i++) {
        ok = cf_recv(&x->conn, &m, x->timeout_ms) == 0 && m.hdr.msg_id == 7;
        cf_msg_free(&m);
    }
    cf_check(x, "framing/msg-id-reused", ok ? CF_PASS : CF_FAIL,
             SPEC_HDR ": message IDs can be re-used, even concurrently");
    /* no_reply: the first command is not answered. */
    if (x->conn.fd < 0)
        cf_session(x);
    {
        uint16_t id1, id2;
        ok = cf_send_cmd(&x->conn, VFU_CMD_DEVICE_GET_INFO, VFU_HDR_NO_REPLY, &di, sizeof(di), NULL,
                         0, &id1) == 0 &&
             cf_send_cmd(&x->conn, VFU_CMD_DEVICE_GET_INFO, 0, &di, sizeof(di), NULL, 0, &id2) == 0;
        int r = ok ? cf_recv(&x->conn, &m, x->timeout_ms) : -EIO;
        ok = r == 0 && m.hdr.msg_id == id2;
        cf_check(x, "framing/no-reply", ok ? CF_PASS : CF_FAIL,
                 SPEC_HDR ": a command with No_reply gets no reply (%s)",
                 r ? "no reply at all" : m.hdr.msg_id == id1 ? "the no_reply one was answered"
                                                            : "the next reply is the other's");
        if (r == 0)
            cf_msg_free(&m);
    }
    /* A header split over two writes is one message. */
    if (x->conn.fd < 0)
        cf_session(x);
    {
        struct vfu_hdr h = {.msg_id = 9, .cmd = VFU_CMD_DEVICE_GET_INFO,
                            .size = sizeof(h) + sizeof(di)};
        memcpy(buf, &h, sizeof(h));
        memcpy(buf + sizeof(h), &di, sizeof(di));
        ok = cf_send_raw(&x->conn, buf, 5, NULL, 0) == 0;
        nanosleep(&(struct timespec){.tv_nsec = 50 * 1000 * 1000}, NULL);
        ok = ok && cf_send_raw(&x->conn, buf + 5, sizeof(h) + sizeof(di) - 5, NULL, 0) == 0;
        memset(&m, 0, sizeof(m)); /* freed whatever the reply was */
        ok = ok && cf_recv(&x->conn, &m, x->timeout_ms) == 0 && m.hdr.msg_id == 9 &&
             !(m.hdr.flags & VFU_HDR_ERROR);
        cf_msg_free(&m);
        cf_check(x, "framing/split-message", ok ? CF_PASS : CF_FAIL,
                 "a UNIX stream socket: a message may arrive in pieces");
    }
    cf_session(x);
    (void)res;
}

/* ---- fd accounting ---- */

static void fd_extra(struct cf_ctx *x, const char *name, uint16_t cmd, const void *p, size_t len,
                     unsigned nfds)
{
    int pipes[24][2], wr[24];
    unsigned made = 0, released = 0;
    struct cf_res res;
    char b[200];

    for (; made < nfds && made < 24; made++) {
        if (cf_pipe(pipes[made]) != 0)
            break;
        wr[made] = pipes[made][1];
    }
    cf_ensure(x);
    cf_call(x, cmd, p, len, wr, made, &res);
    for (unsigned i = 0; i < made; i++)
        close(pipes[i][1]);
    for (unsigned i = 0; i < made; i++) {
        released += cf_fd_released(pipes[i][0], i ? 200 : 2000);
        close(pipes[i][0]);
    }
    cf_check(x, name,
             (res.out == CF_OK || res.out == CF_ERR || res.out == CF_CLOSED) && released == made
                 ? CF_PASS
                 : CF_FAIL,
             "descriptors a command does not take are closed by the time of the reply (libvfio-user "
             "consume_fd/free_msg): %u of %u closed; %s",
             released, made, cf_res_str(&res, b, sizeof(b)));
    cf_res_free(&res);
}

static void group_fds(struct cf_ctx *x)
{
    struct vfu_device_info di = {.argsz = sizeof(di)};
    struct vfu_irq_info ii = {.argsz = sizeof(ii), .index = 0};
    struct vfu_region_info ri = {.argsz = sizeof(ri), .index = 0};
    struct vfu_region_access ra = {.offset = 0, .region = VFU_REGION_CONFIG, .count = 4};
    struct vfu_dma_unmap du = {.argsz = sizeof(du), .addr = 0x7000000000ull, .size = 4096};
    struct {
        struct vfu_feature f;
    } fe = {{.argsz = 16, .flags = VFU_FEATURE_GET | CF_FEAT_MIGRATION}};

    fd_extra(x, "fds/get-info", VFU_CMD_DEVICE_GET_INFO, &di, sizeof(di), 1);
    fd_extra(x, "fds/irq-info", VFU_CMD_DEVICE_GET_IRQ_INFO, &ii, sizeof(ii), 1);
    fd_extra(x, "fds/region-info", VFU_CMD_DEVICE_GET_REGION_INFO, &ri, sizeof(ri), 1);
    fd_extra(x, "fds/region-read", VFU_CMD_REGION_READ, &ra, sizeof(ra), 1);
    fd_extra(x, "fds/dma-unmap", VFU_CMD_DMA_UNMAP, &du, sizeof(du), 1);
    fd_extra(x, "fds/feature", VFU_CMD_DEVICE_FEATURE, &fe, sizeof(fe), 1);
    fd_extra(x, "fds/unknown-command", 14, &di, sizeof(di), 1);
    fd_extra(x, "fds/above-max_msg_fds", VFU_CMD_DEVICE_GET_INFO, &di, sizeof(di), 20);
    cf_alive(x, "fds/alive");
}

void cf_group_protocol(struct cf_ctx *x)
{
    group_version(x);
    if (cf_ensure(x) != 0)
        return;
    group_device_info(x);
    group_region_info(x);
    group_region_access(x);
    group_irqs(x);
    group_features(x);
    group_misc(x);
    group_framing(x);
    group_fds(x);
}
