/* conform/logging */
#include "conform/cf_int.h"

void cf_group_logging(struct cf_ctx *x)
{
    cf_check(x, "all", CF_SKIP, "not written yet");
}
