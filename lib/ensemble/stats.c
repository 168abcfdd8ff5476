/* Statistics of results: Student's t quantile, mean with its standard error
 * and 95% interval, and McNemar's exact test of two classifiers on the same
 * samples -- what a report needs to tell a real difference from noise. */
#include "ensemble.h"

#include <math.h>

/* The 97.5% quantile of Student's t with df degrees of freedom: a table up to
 * 30, then 1.96 + 2.5 / df (within 0.002 of the exact value). */
double kd_t975(int df)
{
    static const double table[30] = {12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306,
                                     2.262,  2.228, 2.201, 2.179, 2.160, 2.145, 2.131, 2.120,
                                     2.110,  2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
                                     2.060,  2.056, 2.052, 2.048, 2.045, 2.042};
    return df <= 30 ? table[df - 1] : 1.96 + 2.5 / df;
}

kdens_status kdens_mean_ci(const double *values, int n, double *mean, double *sem,
                          double *ci95_half)
{
    if (!values || n < 1)
        return kd_fail(KDENS_E_ARG, "NULL values or %d of them", n);
    double sum = 0;
    for (int i = 0; i < n; i++) {
        if (!isfinite(values[i]))
            return kd_fail(KDENS_E_ARG, "value %d is %g", i, values[i]);
        sum += values[i];
    }
    double mu = sum / n, ss = 0;
    for (int i = 0; i < n; i++)
        ss += (values[i] - mu) * (values[i] - mu);
    double se = n > 1 ? sqrt(ss / (n - 1) / n) : 0;
    if (mean)
        *mean = mu;
    if (sem)
        *sem = se;
    if (ci95_half)
        *ci95_half = n > 1 ? kd_t975(n - 1) * se : 0;
    return KDENS_OK;
}

/* P(X <= k) for X ~ Binomial(n, 1/2): each term C(n, i) / 2^n from lgamma,
 * so that none overflows however large n is. */
static double binomial_half_cdf(uint64_t k, uint64_t n)
{
    double log_norm = -(double)n * log(2.0), lg_n1 = lgamma((double)n + 1), total = 0;
    for (uint64_t i = 0; i <= k; i++)
        total += exp(lg_n1 - lgamma((double)i + 1) - lgamma((double)(n - i) + 1) + log_norm);
    return total;
}

kdens_status kdens_mcnemar(const int32_t *decisions_a, const int32_t *decisions_b,
                           const int32_t *labels, size_t n, uint64_t *only_a, uint64_t *only_b,
                           double *p_value)
{
    if (!decisions_a || !decisions_b || !labels)
        return kd_fail(KDENS_E_ARG, "NULL argument");
    uint64_t a = 0, b = 0;
    for (size_t i = 0; i < n; i++) {
        bool ra = decisions_a[i] == labels[i], rb = decisions_b[i] == labels[i];
        a += ra && !rb;
        b += rb && !ra;
    }
    if (only_a)
        *only_a = a;
    if (only_b)
        *only_b = b;
    if (p_value)
        *p_value = a + b ? fmin(1.0, 2 * binomial_half_cdf(a < b ? a : b, a + b)) : 1.0;
    return KDENS_OK;
}
