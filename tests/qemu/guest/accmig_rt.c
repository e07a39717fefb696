// SPDX-License-Identifier: GPL-2.0
/*
 * accmig_rt: a guest-side round-trip check of the hisi_zip VF driver.
 *
 * At load time it compresses a few buffers through the kernel's acomp API
 * with the driver named by `drv` (hisi-deflate-acomp by default: the real
 * device behind accmig serve), inflates each result with the kernel's
 * software zlib and compares it with the input; then the other way round
 * (software deflate, device inflate). It prints one line per check, all
 * prefixed "accmig_rt:", and a final "accmig_rt: RESULT pass N" or
 * "accmig_rt: RESULT fail N/M"; the load fails (-EIO) if any check failed,
 * so `insmod` exits non-zero too. The module does nothing after init.
 */
#include <crypto/acompress.h>
#include <linux/crypto.h>
#include <linux/module.h>
#include <linux/random.h>
#include <linux/scatterlist.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/vmalloc.h>
#include <linux/zlib.h>

static char *drv = "hisi-deflate-acomp";
module_param(drv, charp, 0444);
MODULE_PARM_DESC(drv, "acomp driver name to test");

/* What each buffer holds: how compressible it is. */
enum rt_fill { RT_TEXT, RT_ZERO, RT_RANDOM };

struct rt_case {
	size_t len;
	enum rt_fill fill;
	const char *what;
};

static const struct rt_case rt_cases[] = {
	{ 4096, RT_TEXT, "text-4k" },
	{ 65536, RT_TEXT, "text-64k" },
	{ 65536, RT_ZERO, "zero-64k" },
	{ 16384, RT_RANDOM, "random-16k" },
	{ 262144, RT_TEXT, "text-256k" },
};

static void rt_fill_buf(u8 *buf, size_t len, enum rt_fill fill)
{
	static const char words[] = "accmig hisi_zip vfio-user round trip through the real VF driver; ";
	size_t i;

	switch (fill) {
	case RT_ZERO:
		memset(buf, 0, len);
		break;
	case RT_RANDOM:
		get_random_bytes(buf, len);
		break;
	case RT_TEXT:
	default:
		/* Repetitive but not periodic in the buffer length: a counter
		 * every 64 bytes keeps the matcher busy. */
		for (i = 0; i < len; i++)
			buf[i] = words[(i + i / 997) % (sizeof(words) - 1)];
		for (i = 0; i + 8 <= len; i += 64)
			snprintf((char *)buf + i, 8, "%07zx", i);
		break;
	}
}

/* One acomp request, synchronously. Returns 0 and *outlen or -errno. */
static int rt_acomp(struct crypto_acomp *tfm, bool compress, const u8 *in,
		    size_t inlen, u8 *out, size_t *outlen)
{
	struct scatterlist src, dst;
	struct acomp_req *req;
	DECLARE_CRYPTO_WAIT(wait);
	int ret;

	req = acomp_request_alloc(tfm);
	if (!req)
		return -ENOMEM;
	sg_init_one(&src, in, inlen);
	sg_init_one(&dst, out, *outlen);
	acomp_request_set_params(req, &src, &dst, inlen, *outlen);
	acomp_request_set_callback(req, CRYPTO_TFM_REQ_MAY_BACKLOG,
				   crypto_req_done, &wait);
	ret = crypto_wait_req(compress ? crypto_acomp_compress(req) :
				  crypto_acomp_decompress(req), &wait);
	if (!ret)
		*outlen = req->dlen;
	acomp_request_free(req);
	return ret;
}

/* Raw deflate (no zlib header), as the hisi "deflate" algorithm emits. */
static int rt_sw_inflate(const u8 *in, size_t inlen, u8 *out, size_t *outlen)
{
	struct z_stream_s s = { 0 };
	int ret;

	s.workspace = vzalloc(zlib_inflate_workspacesize());
	if (!s.workspace)
		return -ENOMEM;
	ret = zlib_inflateInit2(&s, -MAX_WBITS);
	if (ret != Z_OK) {
		ret = -EINVAL;
		goto out;
	}
	s.next_in = in;
	s.avail_in = inlen;
	s.next_out = out;
	s.avail_out = *outlen;
	ret = zlib_inflate(&s, Z_FINISH);
	*outlen = s.total_out;
	ret = ret == Z_STREAM_END ? 0 : -EBADMSG;
	zlib_inflateEnd(&s);
out:
	vfree(s.workspace);
	return ret;
}

static int rt_sw_deflate(const u8 *in, size_t inlen, u8 *out, size_t *outlen)
{
	struct z_stream_s s = { 0 };
	int ret;

	s.workspace = vzalloc(zlib_deflate_workspacesize(-MAX_WBITS, MAX_MEM_LEVEL));
	if (!s.workspace)
		return -ENOMEM;
	ret = zlib_deflateInit2(&s, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -MAX_WBITS,
				MAX_MEM_LEVEL, Z_DEFAULT_STRATEGY);
	if (ret != Z_OK) {
		ret = -EINVAL;
		goto out;
	}
	s.next_in = in;
	s.avail_in = inlen;
	s.next_out = out;
	s.avail_out = *outlen;
	ret = zlib_deflate(&s, Z_FINISH);
	*outlen = s.total_out;
	ret = ret == Z_STREAM_END ? 0 : -ENOSPC;
	zlib_deflateEnd(&s);
out:
	vfree(s.workspace);
	return ret;
}

/* Device compress + software inflate, then software deflate + device
 * inflate, for one case. Returns the number of failed directions. */
static int rt_run_case(struct crypto_acomp *tfm, const struct rt_case *c)
{
	size_t cap = c->len * 2 + 4096;
	size_t clen, dlen;
	u8 *in, *cbuf, *dbuf;
	int fails = 0, ret;

	in = kmalloc(c->len, GFP_KERNEL);
	cbuf = kmalloc(cap, GFP_KERNEL);
	dbuf = kmalloc(cap, GFP_KERNEL);
	if (!in || !cbuf || !dbuf) {
		pr_err("accmig_rt: FAIL %s: no memory\n", c->what);
		fails = 2;
		goto out;
	}
	rt_fill_buf(in, c->len, c->fill);

	clen = cap;
	ret = rt_acomp(tfm, true, in, c->len, cbuf, &clen);
	if (!ret) {
		dlen = cap;
		ret = rt_sw_inflate(cbuf, clen, dbuf, &dlen);
		if (!ret && (dlen != c->len || memcmp(in, dbuf, c->len)))
			ret = -EILSEQ;
	}
	if (ret) {
		fails++;
		pr_err("accmig_rt: FAIL %s hw-compress/sw-inflate: %d\n", c->what, ret);
	} else {
		pr_info("accmig_rt: ok %s hw-compress/sw-inflate %zu -> %zu -> %zu\n",
			c->what, c->len, clen, dlen);
	}

	clen = cap;
	ret = rt_sw_deflate(in, c->len, cbuf, &clen);
	if (!ret) {
		dlen = cap;
		ret = rt_acomp(tfm, false, cbuf, clen, dbuf, &dlen);
		if (!ret && (dlen != c->len || memcmp(in, dbuf, c->len)))
			ret = -EILSEQ;
	}
	if (ret) {
		fails++;
		pr_err("accmig_rt: FAIL %s sw-deflate/hw-decompress: %d\n", c->what, ret);
	} else {
		pr_info("accmig_rt: ok %s sw-deflate/hw-decompress %zu -> %zu -> %zu\n",
			c->what, c->len, clen, dlen);
	}
out:
	kfree(in);
	kfree(cbuf);
	kfree(dbuf);
	return fails;
}

static int __init accmig_rt_init(void)
{
	struct crypto_acomp *tfm;
	int total = 2 * ARRAY_SIZE(rt_cases), fails = 0;
	size_t i;

	tfm = crypto_alloc_acomp(drv, 0, 0);
	if (IS_ERR(tfm)) {
		pr_err("accmig_rt: RESULT fail: cannot allocate %s: %ld\n", drv, PTR_ERR(tfm));
		return PTR_ERR(tfm);
	}
	pr_info("accmig_rt: testing %s (driver %s)\n", drv,
		crypto_tfm_alg_driver_name(crypto_acomp_tfm(tfm)));
	for (i = 0; i < ARRAY_SIZE(rt_cases); i++)
		fails += rt_run_case(tfm, &rt_cases[i]);
	crypto_free_acomp(tfm);
	if (fails) {
		pr_err("accmig_rt: RESULT fail %d/%d\n", fails, total);
		return -EIO;
	}
	pr_info("accmig_rt: RESULT pass %d\n", total);
	return 0;
}

static void __exit accmig_rt_exit(void)
{
}

module_init(accmig_rt_init);
module_exit(accmig_rt_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("accmig: hisi_zip acomp round-trip check against software zlib");
