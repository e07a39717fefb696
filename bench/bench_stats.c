/* bench_stats: percentiles and medians over a run's samples, shared by the
 * benchmarks (bench.h). */
#include <stdint.h>
#include <stdlib.h>

#include "bench.h"
#include "common/common.h"

static int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

void bench_sort(double *v, unsigned n)
{
    qsort(v, n, sizeof(*v), bench_cmp_double);
}

double bench_pct_sorted(const double *v, unsigned n, unsigned p)
{
    unsigned rank = (unsigned)(((uint64_t)p * n + 99) / 100);

    if (n == 0)
        return 0.0;
    return v[rank > 0 ? AM_MIN(rank, n) - 1 : 0];
}

double bench_median(double *v, unsigned n)
{
    if (n == 0)
        return 0.0;
    bench_sort(v, n);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

void bench_spread(double *v, unsigned n, struct bench_spread *s)
{
    bench_sort(v, n);
    s->min = n ? v[0] : 0.0;
    s->p50 = bench_pct_sorted(v, n, 50);
    s->p99 = bench_pct_sorted(v, n, 99);
    s->max = n ? v[n - 1] : 0.0;
}
