/* vfu/msg: header validation, command names and the VERSION capabilities
 * JSON. */
#include <errno.h>
#include <json-c/json.h>
#include <string.h>

#include "vfu/vfu_msg.h"

static const char *const cmd_names[VFU_CMD_MAX] = {
    [VFU_CMD_VERSION] = "VERSION",
    [VFU_CMD_DMA_MAP] = "DMA_MAP",
    [VFU_CMD_DMA_UNMAP] = "DMA_UNMAP",
    [VFU_CMD_DEVICE_GET_INFO] = "DEVICE_GET_INFO",
    [VFU_CMD_DEVICE_GET_REGION_INFO] = "DEVICE_GET_REGION_INFO",
    [VFU_CMD_DEVICE_GET_REGION_IO_FDS] = "DEVICE_GET_REGION_IO_FDS",
    [VFU_CMD_DEVICE_GET_IRQ_INFO] = "DEVICE_GET_IRQ_INFO",
    [VFU_CMD_DEVICE_SET_IRQS] = "DEVICE_SET_IRQS",
    [VFU_CMD_REGION_READ] = "REGION_READ",
    [VFU_CMD_REGION_WRITE] = "REGION_WRITE",
    [VFU_CMD_DMA_READ] = "DMA_READ",
    [VFU_CMD_DMA_WRITE] = "DMA_WRITE",
    [VFU_CMD_DEVICE_RESET] = "DEVICE_RESET",
    [VFU_CMD_REGION_WRITE_MULTI] = "REGION_WRITE_MULTI",
    [VFU_CMD_DEVICE_FEATURE] = "DEVICE_FEATURE",
    [VFU_CMD_MIG_DATA_READ] = "MIG_DATA_READ",
    [VFU_CMD_MIG_DATA_WRITE] = "MIG_DATA_WRITE",
};

const char *vfu_cmd_name(unsigned cmd)
{
    if (cmd < VFU_CMD_MAX && cmd_names[cmd])
        return cmd_names[cmd];
    return "UNKNOWN";
}

int vfu_hdr_check(const struct vfu_hdr *h, unsigned expect_type, uint64_t max_size)
{
    if ((h->flags & VFU_HDR_TYPE_MASK) != expect_type)
        return -EINVAL;
    if (h->size < sizeof(*h))
        return -EINVAL;
    if (h->size > max_size)
        return -E2BIG;
    return 0;
}

/* ---- capabilities ---- */

/* A JSON number that is a non-negative integer; false otherwise. */
static bool json_get_u64(struct json_object *o, uint64_t *out)
{
    if (!json_object_is_type(o, json_type_int))
        return false;
    if (json_object_get_int64(o) < 0)
        return false;
    *out = json_object_get_uint64(o);
    return true;
}

/* Records why the capabilities were refused (a static string). */
static int caps_fail(struct vfu_caps *out, const char *why)
{
    out->error = why;
    return -EINVAL;
}

static int caps_parse_migration(struct json_object *migr, struct vfu_caps *out)
{
    struct json_object *v;

    if (!json_object_is_type(migr, json_type_object))
        return caps_fail(out, "\"migration\" is not an object");
    out->has_migration = true;
    if (json_object_object_get_ex(migr, "pgsize", &v) &&
        (!json_get_u64(v, &out->migr_pgsize) || out->migr_pgsize % 4096 != 0))
        return caps_fail(out, "migration pgsize is not a multiple of 4096");
    if (json_object_object_get_ex(migr, "max_bitmap_size", &v) &&
        !json_get_u64(v, &out->migr_max_bitmap))
        return caps_fail(out, "migration max_bitmap_size is not a non-negative integer");
    return 0;
}

static int caps_parse_twin(struct json_object *twin, struct vfu_caps *out)
{
    struct json_object *v;

    if (!json_object_is_type(twin, json_type_object))
        return caps_fail(out, "\"twin_socket\" is not an object");
    out->has_twin = true;
    if (json_object_object_get_ex(twin, "supported", &v)) {
        if (!json_object_is_type(v, json_type_boolean))
            return caps_fail(out, "twin_socket supported is not a boolean");
        out->twin_supported = json_object_get_boolean(v);
    }
    if (json_object_object_get_ex(twin, "fd_index", &v)) {
        if (!json_get_u64(v, &out->twin_fd_index))
            return caps_fail(out, "twin_socket fd_index is not a non-negative integer");
        out->has_twin_fd_index = true;
    }
    return 0;
}

static int caps_parse_object(struct json_object *caps, struct vfu_caps *out)
{
    struct json_object *v;

    if (!json_object_is_type(caps, json_type_object))
        return caps_fail(out, "\"capabilities\" is not an object");
    /* Any count: it only bounds what we may send (at most one descriptor
     * per message); a peer that takes 32 (libvfio-user) is fine. */
    if (json_object_object_get_ex(caps, "max_msg_fds", &v)) {
        if (!json_get_u64(v, &out->max_msg_fds))
            return caps_fail(out, "max_msg_fds is not a non-negative integer");
        out->has_max_msg_fds = true;
    }
    if (json_object_object_get_ex(caps, "max_data_xfer_size", &v)) {
        if (!json_get_u64(v, &out->max_xfer))
            return caps_fail(out, "max_data_xfer_size is not a non-negative integer");
        if (out->max_xfer == 0 || out->max_xfer > VFU_MAX_MAX_XFER)
            return caps_fail(out, "max_data_xfer_size is 0 or above 64 MiB");
        out->has_max_xfer = true;
    }
    if (json_object_object_get_ex(caps, "max_dma_maps", &v)) {
        if (!json_get_u64(v, &out->max_dma_maps))
            return caps_fail(out, "max_dma_maps is not a non-negative integer");
        if (out->max_dma_maps == 0 || out->max_dma_maps > VFU_DEFAULT_MAX_DMA_MAPS)
            return caps_fail(out, "max_dma_maps is 0 or above 65535");
        out->has_max_dma_maps = true;
    }
    if (json_object_object_get_ex(caps, "pgsizes", &v)) {
        /* Only page sizes of 4 KiB and up make sense for DMA maps. */
        if (!json_get_u64(v, &out->pgsizes))
            return caps_fail(out, "pgsizes is not a non-negative integer");
        if ((out->pgsizes & ~UINT64_C(4095)) == 0)
            return caps_fail(out, "pgsizes has no page size of 4 KiB or more");
        out->has_pgsizes = true;
    }
    if (json_object_object_get_ex(caps, "write_multiple", &v)) {
        if (!json_object_is_type(v, json_type_boolean))
            return caps_fail(out, "write_multiple is not a boolean");
        out->write_multiple = json_object_get_boolean(v);
        out->has_write_multiple = true;
    }
    if (json_object_object_get_ex(caps, "accmig_cooperative_doorbells", &v)) {
        if (!json_object_is_type(v, json_type_boolean))
            return caps_fail(out, "accmig_cooperative_doorbells is not a boolean");
        out->coop_db = json_object_get_boolean(v);
        out->has_coop_db = true;
    }
    if (json_object_object_get_ex(caps, "migration", &v)) {
        int ret = caps_parse_migration(v, out);
        if (ret)
            return ret;
    }
    if (json_object_object_get_ex(caps, "twin_socket", &v)) {
        int ret = caps_parse_twin(v, out);
        if (ret)
            return ret;
    }
    return 0;
}

int vfu_caps_parse(const char *json, size_t len, struct vfu_caps *out)
{
    struct json_tokener *tok;
    struct json_object *root, *caps;
    size_t end;
    int ret;

    memset(out, 0, sizeof(*out));
    /* The JSON ends with its NUL exactly at the end, and has no NUL before. */
    if (len == 0 || json[len - 1] != '\0')
        return caps_fail(out, "the JSON does not end with a NUL at the end of the message");
    if (strlen(json) != len - 1)
        return caps_fail(out, "a NUL inside the JSON");
    if (len - 1 > INT32_MAX)
        return caps_fail(out, "JSON above 2 GiB");
    tok = json_tokener_new();
    if (!tok)
        return -ENOMEM;
    root = json_tokener_parse_ex(tok, json, (int)(len - 1));
    if (!root || json_tokener_get_error(tok) != json_tokener_success) {
        json_object_put(root);
        json_tokener_free(tok);
        return caps_fail(out, "malformed JSON");
    }
    /* Only whitespace may follow the object. */
    end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    for (; end < len - 1; end++) {
        if (!strchr(" \t\r\n", json[end])) {
            json_object_put(root);
            return caps_fail(out, "more than whitespace after the JSON object");
        }
    }
    ret = 0;
    if (!json_object_is_type(root, json_type_object))
        ret = caps_fail(out, "the JSON is not an object");
    else if (json_object_object_get_ex(root, "capabilities", &caps))
        ret = caps_parse_object(caps, out);
    json_object_put(root);
    return ret;
}

static int caps_add_u64(struct json_object *o, const char *key, uint64_t v)
{
    struct json_object *n = json_object_new_uint64(v);
    if (!n)
        return -ENOMEM;
    if (json_object_object_add(o, key, n)) {
        json_object_put(n);
        return -ENOMEM;
    }
    return 0;
}

static int caps_add_bool(struct json_object *o, const char *key, bool v)
{
    struct json_object *n = json_object_new_boolean(v);
    if (!n)
        return -ENOMEM;
    if (json_object_object_add(o, key, n)) {
        json_object_put(n);
        return -ENOMEM;
    }
    return 0;
}

static int caps_build(const struct vfu_caps *c, struct json_object *caps)
{
    int ret = 0;

    if (!ret && c->has_max_msg_fds)
        ret = caps_add_u64(caps, "max_msg_fds", c->max_msg_fds);
    if (!ret && c->has_max_xfer)
        ret = caps_add_u64(caps, "max_data_xfer_size", c->max_xfer);
    if (!ret && c->has_max_dma_maps)
        ret = caps_add_u64(caps, "max_dma_maps", c->max_dma_maps);
    if (!ret && c->has_pgsizes)
        ret = caps_add_u64(caps, "pgsizes", c->pgsizes);
    if (!ret && c->has_write_multiple)
        ret = caps_add_bool(caps, "write_multiple", c->write_multiple);
    if (!ret && c->has_coop_db)
        ret = caps_add_bool(caps, "accmig_cooperative_doorbells", c->coop_db);
    if (!ret && c->has_twin) {
        struct json_object *t = json_object_new_object();
        if (!t)
            return -ENOMEM;
        if (json_object_object_add(caps, "twin_socket", t)) {
            json_object_put(t);
            return -ENOMEM;
        }
        ret = caps_add_bool(t, "supported", c->twin_supported);
        if (!ret && c->has_twin_fd_index)
            ret = caps_add_u64(t, "fd_index", c->twin_fd_index);
    }
    return ret;
}

int vfu_caps_format(const struct vfu_caps *c, char *buf, size_t cap)
{
    struct json_object *root, *caps;
    const char *s;
    size_t n;
    int ret;

    root = json_object_new_object();
    caps = json_object_new_object();
    if (!root || !caps) {
        json_object_put(root);
        json_object_put(caps);
        return -ENOMEM;
    }
    if (json_object_object_add(root, "capabilities", caps)) {
        json_object_put(caps);
        json_object_put(root);
        return -ENOMEM;
    }
    ret = caps_build(c, caps);
    if (ret) {
        json_object_put(root);
        return ret;
    }
    s = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN);
    if (!s) {
        json_object_put(root);
        return -ENOMEM;
    }
    n = strlen(s) + 1;
    if (n > cap || n > INT32_MAX) {
        json_object_put(root);
        return -ENOSPC;
    }
    memcpy(buf, s, n);
    json_object_put(root);
    return (int)n;
}
