/* Decision fusion: averaging rules on the members' probabilities, and
 * voting rules on the members' rankings of the classes (docs/fusion.md).
 * Ties are broken by the summed probability, then the lowest class index. */
#include "ensemble.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* Everything one sample's fusion needs, allocated once per call. */
typedef struct ctx {
    int m, k;
    const float **p;  /* p[member] -> k probabilities of this sample */
    double *sum;      /* k: summed probabilities (the tie-breaker) */
    int *rank;        /* m x k: ballot of member i, best first */
    int *pair;        /* k x k: members preferring a over b */
    bool *alive;      /* k */
    double *score;    /* k */
    double *tmp;      /* k x k work */
    int *perm;        /* k work */
    unsigned char *reach; /* k x k work (Kemeny) */
    double *dp;       /* 2^min(k, KD_KEMENY_EXACT) work (Kemeny) */
} ctx;

/* The best class by score among the alive, ties by sum then lowest index. */
static int best_of(const ctx *c, const double *score)
{
    int best = -1;
    for (int a = 0; a < c->k; a++) {
        if (!c->alive[a])
            continue;
        if (best < 0 || score[a] > score[best] ||
            (score[a] == score[best] && c->sum[a] > c->sum[best]))
            best = a;
    }
    return best;
}

/* The worst alive class (to eliminate): lowest score, ties by lower sum,
 * then the highest index (the reverse of best_of). */
static int worst_of(const ctx *c, const double *score)
{
    int worst = -1;
    for (int a = c->k - 1; a >= 0; a--) {
        if (!c->alive[a])
            continue;
        if (worst < 0 || score[a] < score[worst] ||
            (score[a] == score[worst] && c->sum[a] < c->sum[worst]))
            worst = a;
    }
    return worst;
}

static int alive_count(const ctx *c)
{
    int n = 0;
    for (int a = 0; a < c->k; a++)
        n += c->alive[a];
    return n;
}

/* The alive class member i ranks highest. */
static int top_alive(const ctx *c, int i)
{
    for (int r = 0; r < c->k; r++)
        if (c->alive[c->rank[i * c->k + r]])
            return c->rank[i * c->k + r];
    return -1;
}

static void borda_alive(ctx *c, double *score)
{
    for (int a = 0; a < c->k; a++)
        score[a] = 0;
    int n = alive_count(c);
    for (int i = 0; i < c->m; i++) {
        int r = 0;
        for (int j = 0; j < c->k; j++) {
            int a = c->rank[i * c->k + j];
            if (c->alive[a])
                score[a] += n - 1 - r++;
        }
    }
}

/* The class preferred to every other by more members than prefer the
 * other (pair: members ranking a above b), or -1. */
static int condorcet_winner(const int *pair, int k)
{
    for (int a = 0; a < k; a++) {
        bool wins_all = true;
        for (int b = 0; b < k && wins_all; b++)
            wins_all = a == b || pair[a * k + b] > pair[b * k + a];
        if (wins_all)
            return a;
    }
    return -1;
}

/* ---- the rules: each fills c->score (all classes alive) and decides ---------- */

static int rule_mean(ctx *c)
{
    for (int a = 0; a < c->k; a++)
        c->score[a] = c->sum[a] / c->m;
    return best_of(c, c->score);
}

static int rule_sum(ctx *c)
{
    for (int a = 0; a < c->k; a++)
        c->score[a] = c->sum[a];
    return best_of(c, c->score);
}

static int rule_geometric(ctx *c)
{
    for (int a = 0; a < c->k; a++) {
        double lg = 0;
        for (int i = 0; i < c->m; i++)
            lg += log(c->p[i][a] > 1e-30f ? c->p[i][a] : 1e-30);
        c->score[a] = exp(lg / c->m);
    }
    return best_of(c, c->score);
}

static int rule_max(ctx *c)
{
    for (int a = 0; a < c->k; a++)
        for (int i = 0; i < c->m; i++)
            c->score[a] = c->p[i][a] > c->score[a] ? c->p[i][a] : c->score[a];
    return best_of(c, c->score);
}

static int rule_median(ctx *c)
{
    int m = c->m;
    for (int a = 0; a < c->k; a++) {
        double *v = c->tmp;
        for (int i = 0; i < m; i++) { /* insertion sort: m is small */
            double x = c->p[i][a];
            int j = i;
            while (j > 0 && v[j - 1] > x)
                v[j] = v[j - 1], j--;
            v[j] = x;
        }
        c->score[a] = m % 2 ? v[m / 2] : 0.5 * (v[m / 2 - 1] + v[m / 2]);
    }
    return best_of(c, c->score);
}

static int rule_plurality(ctx *c)
{
    for (int i = 0; i < c->m; i++)
        c->score[c->rank[i * c->k]] += 1;
    return best_of(c, c->score);
}

/* Positional rules: points(r, k) for the class at rank r of every ballot. */
static int positional(ctx *c, double (*points)(int r, int k))
{
    for (int i = 0; i < c->m; i++)
        for (int r = 0; r < c->k; r++)
            c->score[c->rank[i * c->k + r]] += points(r, c->k);
    return best_of(c, c->score);
}
static double borda_points(int r, int k) { return k - 1 - r; }
static double symmetric_points(int r, int k) { return k - 1 - 2.0 * r; }
static double dowdall_points(int r, int k)
{
    (void)k;
    return 1.0 / (r + 1);
}
static int rule_borda(ctx *c) { return positional(c, borda_points); }
static int rule_borda_symmetric(ctx *c) { return positional(c, symmetric_points); }
static int rule_dowdall(ctx *c) { return positional(c, dowdall_points); }

static int rule_copeland(ctx *c)
{
    int k = c->k;
    for (int a = 0; a < k; a++)
        for (int b = 0; b < k; b++)
            if (a != b)
                c->score[a] += (c->pair[a * k + b] > c->pair[b * k + a]) -
                               (c->pair[a * k + b] < c->pair[b * k + a]);
    return best_of(c, c->score);
}

static int rule_simpson(ctx *c)
{
    int k = c->k;
    for (int a = 0; a < k; a++) {
        int worst = 0;
        for (int b = 0; b < k; b++)
            if (b != a && c->pair[b * k + a] > worst)
                worst = c->pair[b * k + a];
        c->score[a] = -worst;
    }
    return best_of(c, c->score);
}

static int rule_schulze(ctx *c)
{
    int k = c->k;
    double *d = c->tmp;
    for (int a = 0; a < k; a++)
        for (int b = 0; b < k; b++)
            d[a * k + b] =
                a != b && c->pair[a * k + b] > c->pair[b * k + a] ? c->pair[a * k + b] : 0;
    for (int x = 0; x < k; x++)
        for (int a = 0; a < k; a++)
            for (int b = 0; b < k; b++)
                if (a != b && a != x && b != x) {
                    double via = fmin(d[a * k + x], d[x * k + b]);
                    if (via > d[a * k + b])
                        d[a * k + b] = via;
                }
    for (int a = 0; a < k; a++)
        for (int b = 0; b < k; b++)
            if (a != b && d[a * k + b] >= d[b * k + a])
                c->score[a] += 1; /* beaten by no one wins: k - 1 */
    return best_of(c, c->score);
}

static int rule_baldwin(ctx *c)
{
    while (alive_count(c) > 1) {
        borda_alive(c, c->score);
        c->alive[worst_of(c, c->score)] = false;
    }
    borda_alive(c, c->score);
    return best_of(c, c->score);
}

static int rule_nanson(ctx *c)
{
    double *s = c->score;
    while (alive_count(c) > 1) {
        borda_alive(c, s);
        double mean = 0;
        int n = alive_count(c), dropped = 0;
        for (int a = 0; a < c->k; a++)
            mean += c->alive[a] ? s[a] : 0;
        mean /= n;
        for (int a = 0; a < c->k; a++)
            if (c->alive[a] && s[a] < mean)
                c->alive[a] = false, dropped++;
        if (!dropped) /* all equal: the tie-break decides */
            break;
    }
    borda_alive(c, s);
    return best_of(c, s);
}

static int rule_bucklin(ctx *c)
{
    int m = c->m, k = c->k;
    double *s = c->score;
    for (int depth = 1; depth <= k; depth++) {
        for (int a = 0; a < k; a++)
            s[a] = 0;
        for (int i = 0; i < m; i++)
            for (int r = 0; r < depth; r++)
                s[c->rank[i * k + r]] += 1;
        int b = best_of(c, s);
        if (s[b] * 2 > m)
            return b;
    }
    return best_of(c, s);
}

static int rule_stv(ctx *c)
{
    double *s = c->score;
    for (;;) {
        for (int a = 0; a < c->k; a++)
            s[a] = 0;
        for (int i = 0; i < c->m; i++)
            s[top_alive(c, i)] += 1;
        int b = best_of(c, s);
        if (s[b] * 2 > c->m || alive_count(c) == 1)
            return b;
        c->alive[worst_of(c, s)] = false;
    }
}

static int rule_condorcet(ctx *c)
{
    int w = condorcet_winner(c->pair, c->k);
    if (w >= 0) {
        c->score[w] = 1;
        return w;
    }
    return rule_sum(c); /* no Condorcet winner: the summed probabilities */
}

/* Kemeny-Young: of all rankings, one with the largest sum of pairwise
 * support; its top class is the decision (ties: the larger probability sum,
 * then the lower index).  Exact by a dynamic program instead of the k!
 * rankings.  Every optimal ranking puts the Smith set on top -- the classes
 * that reach every class through pairwise wins or ties: each of them beats
 * each class outside strictly, so an outsider ranked above one of them
 * could swap down and raise the sum -- and the ranking below it does not
 * change which class is first.  So only the Smith set's s classes are
 * ranked: best(R) = max over c in R of support(c over R \ {c}) + best(R \ {c}),
 * O(2^s s^2).  A Condorcet winner is a Smith set of one.  Above
 * KD_KEMENY_EXACT classes in the Smith set (rare: it needs that many classes
 * in one cycle), Copeland's winner. */
static int smith_set(ctx *c, int *set)
{
    int k = c->k;
    unsigned char *r = c->reach;
    for (int a = 0; a < k; a++)
        for (int b = 0; b < k; b++)
            r[a * k + b] = a == b || c->pair[a * k + b] >= c->pair[b * k + a];
    for (int m = 0; m < k; m++) /* Warshall's transitive closure */
        for (int a = 0; a < k; a++)
            if (r[a * k + m])
                for (int b = 0; b < k; b++)
                    r[a * k + b] |= r[m * k + b];
    int s = 0;
    for (int a = 0; a < k; a++) {
        bool all = true;
        for (int b = 0; b < k && all; b++)
            all = r[a * k + b];
        if (all)
            set[s++] = a;
    }
    return s;
}

/* The pairwise support of class set[i] over the members of R (a subset of
 * set, as bits). */
static double support(const ctx *c, const int *set, int i, uint32_t r)
{
    double v = 0;
    for (int j = 0; r; j++, r >>= 1)
        if (r & 1)
            v += c->pair[set[i] * c->k + set[j]];
    return v;
}

static int rule_kemeny(ctx *c)
{
    int w = condorcet_winner(c->pair, c->k);
    if (w >= 0)
        return w;
    int *set = c->perm, s = smith_set(c, set);
    if (s > KD_KEMENY_EXACT)
        return rule_copeland(c);
    double *best = c->dp;
    best[0] = 0;
    for (uint32_t r = 1; r < (1u << s); r++) {
        double b = -1;
        for (int i = 0; i < s; i++)
            if (r >> i & 1) {
                uint32_t rest = r & ~(1u << i);
                double v = support(c, set, i, rest) + best[rest];
                b = v > b ? v : b;
            }
        best[r] = b;
    }
    uint32_t all = (1u << s) - 1;
    int top = set[0];
    double top_score = -1;
    for (int i = 0; i < s; i++) {
        uint32_t rest = all & ~(1u << i);
        double v = support(c, set, i, rest) + best[rest];
        if (v > top_score || (v == top_score && c->sum[set[i]] > c->sum[top]))
            top_score = v, top = set[i];
    }
    return top;
}

/* The rules by kdens_fusion value: name, whether the rule reads ballots
 * (members' rankings and the pairwise matrix) and its decision. */
typedef struct fusion_rule {
    const char *name;
    bool ballots;
    int (*decide)(ctx *c);
} fusion_rule;

static const fusion_rule rules[] = {
    [KDENS_FUSE_MEAN] = {"mean", false, rule_mean},
    [KDENS_FUSE_SUM] = {"sum", false, rule_sum},
    [KDENS_FUSE_GEOMETRIC] = {"geometric", false, rule_geometric},
    [KDENS_FUSE_MAX] = {"max", false, rule_max},
    [KDENS_FUSE_MEDIAN] = {"median", false, rule_median},
    [KDENS_FUSE_PLURALITY] = {"plurality", true, rule_plurality},
    [KDENS_FUSE_BORDA] = {"borda", true, rule_borda},
    [KDENS_FUSE_BORDA_SYMMETRIC] = {"borda_symmetric", true, rule_borda_symmetric},
    [KDENS_FUSE_DOWDALL] = {"dowdall", true, rule_dowdall},
    [KDENS_FUSE_COPELAND] = {"copeland", true, rule_copeland},
    [KDENS_FUSE_SIMPSON] = {"simpson", true, rule_simpson},
    [KDENS_FUSE_SCHULZE] = {"schulze", true, rule_schulze},
    [KDENS_FUSE_BALDWIN] = {"baldwin", true, rule_baldwin},
    [KDENS_FUSE_NANSON] = {"nanson", true, rule_nanson},
    [KDENS_FUSE_BUCKLIN] = {"bucklin", true, rule_bucklin},
    [KDENS_FUSE_STV] = {"stv", true, rule_stv},
    [KDENS_FUSE_CONDORCET] = {"condorcet", true, rule_condorcet},
    [KDENS_FUSE_KEMENY] = {"kemeny", true, rule_kemeny},
};
_Static_assert(sizeof rules / sizeof rules[0] == KD_FUSE_COUNT,
               "every kdens_fusion value has a rule");

static const fusion_rule *rule_of(kdens_fusion r)
{
    return (unsigned)r < sizeof rules / sizeof rules[0] ? &rules[r] : NULL;
}

int kdens_fusion_count(void)
{
    return KD_FUSE_COUNT;
}

const char *kdens_fusion_name(kdens_fusion rule)
{
    const fusion_rule *r = rule_of(rule);
    return r ? r->name : NULL;
}

kdens_status kdens_fusion_from_name(const char *name, kdens_fusion *rule)
{
    if (!name || !rule)
        return kd_fail(KDENS_E_ARG, "NULL argument");
    int i = kd_table_find(rules, sizeof rules / sizeof rules[0], sizeof rules[0], name);
    if (i >= 0) {
        *rule = (kdens_fusion)i;
        return KDENS_OK;
    }
    return kd_fail(KDENS_E_NOTFOUND, "unknown fusion rule '%s'", name);
}

/* One sample: every class alive, scores from zero, then the rule. */
static int fuse_one(const fusion_rule *r, ctx *c)
{
    for (int a = 0; a < c->k; a++)
        c->alive[a] = true, c->score[a] = 0;
    return r->decide(c);
}

static kdens_status check_probs(const float *probs, int members, size_t samples, int classes)
{
    if (!probs || members < 1 || classes < 1)
        return kd_fail(KDENS_E_ARG, "NULL probabilities, or no members or classes");
    for (size_t i = 0; i < (size_t)members * samples * classes; i++)
        if (!(probs[i] >= 0 && probs[i] <= 1))
            return kd_fail(KDENS_E_ARG, "member %zu, sample %zu, class %zu: probability %g is "
                           "not in [0, 1]", i / classes / samples, i / classes % samples,
                           i % classes, (double)probs[i]);
    return KDENS_OK;
}

kdens_status kdens_fuse(kdens_fusion rule, const float *probs, int members, size_t samples,
                        int classes, int32_t *decisions, float *scores)
{
    if (!probs || !decisions)
        return kd_fail(KDENS_E_ARG, "NULL argument");
    const fusion_rule *fr = rule_of(rule);
    if (!fr)
        return kd_fail(KDENS_E_ARG, "unknown fusion rule %d", (int)rule);
    if (members < 1 || classes < 1 || classes > 100000)
        return kd_fail(KDENS_E_ARG, "an ensemble of %d members over %d classes", members, classes);
    kdens_status check = check_probs(probs, members, samples, classes);
    if (check != KDENS_OK)
        return check;
    int m = members, k = classes;
    ctx c = {m, k, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    c.p = malloc(sizeof(float *) * m);
    c.sum = malloc(sizeof(double) * k);
    c.rank = malloc(sizeof(int) * (size_t)m * k);
    c.pair = malloc(sizeof(int) * (size_t)k * k);
    c.alive = malloc(sizeof(bool) * k);
    c.score = malloc(sizeof(double) * k);
    c.tmp = malloc(sizeof(double) * (size_t)KD_MAX(k, m) * KD_MAX(k, 1) + sizeof(double) * m);
    c.perm = malloc(sizeof(int) * k);
    bool kemeny = rule == KDENS_FUSE_KEMENY;
    if (kemeny) {
        c.reach = malloc((size_t)k * k);
        c.dp = malloc(sizeof(double) << KD_MIN(k, KD_KEMENY_EXACT));
    }
    kdens_status st = KDENS_OK;
    if (!c.p || !c.sum || !c.rank || !c.pair || !c.alive || !c.score || !c.tmp || !c.perm ||
        (kemeny && (!c.reach || !c.dp)))
        st = kd_fail(KDENS_E_NOMEM, "out of memory");
    bool voting = fr->ballots;
    for (size_t n = 0; st == KDENS_OK && n < samples; n++) {
        for (int a = 0; a < k; a++)
            c.sum[a] = 0;
        for (int i = 0; i < m; i++) {
            c.p[i] = probs + ((size_t)i * samples + n) * k;
            for (int a = 0; a < k; a++)
                c.sum[a] += c.p[i][a];
        }
        if (voting) {
            for (int i = 0; i < m; i++) { /* ballot: stable sort by probability */
                int *r = c.rank + (size_t)i * k;
                for (int a = 0; a < k; a++) {
                    int j = a;
                    while (j > 0 && c.p[i][r[j - 1]] < c.p[i][a])
                        r[j] = r[j - 1], j--;
                    r[j] = a;
                }
            }
            memset(c.pair, 0, sizeof(int) * (size_t)k * k);
            for (int i = 0; i < m; i++)
                for (int x = 0; x < k; x++)
                    for (int y = x + 1; y < k; y++)
                        c.pair[c.rank[i * k + x] * k + c.rank[i * k + y]]++;
        }
        decisions[n] = fuse_one(fr, &c);
        if (scores)
            for (int a = 0; a < k; a++)
                scores[n * k + a] = (float)c.score[a];
    }
    free(c.p);
    free(c.sum);
    free(c.rank);
    free(c.pair);
    free(c.alive);
    free(c.score);
    free(c.tmp);
    free(c.perm);
    free(c.reach);
    free(c.dp);
    return st;
}

/* ---- weights and agreement ------------------------------------------------------------- */

/* The index of the largest of k values (lowest index on ties). */
static int argmax(const float *v, int k)
{
    int b = 0;
    for (int a = 1; a < k; a++)
        if (v[a] > v[b])
            b = a;
    return b;
}

kdens_status kdens_fuse_weighted(const float *probs, int members, size_t samples, int classes,
                                 const double *weights, int32_t *decisions, float *scores)
{
    kdens_status st = check_probs(probs, members, samples, classes);
    if (st != KDENS_OK)
        return st;
    if (!weights || !decisions)
        return kd_fail(KDENS_E_ARG, "NULL weights or decisions");
    double total = 0;
    for (int i = 0; i < members; i++) {
        if (!(weights[i] >= 0) || !isfinite(weights[i]))
            return kd_fail(KDENS_E_ARG, "weight %d is %g", i, weights[i]);
        total += weights[i];
    }
    if (!(total > 0))
        return kd_fail(KDENS_E_ARG, "the weights are all 0");
    float *row = malloc(sizeof(float) * classes);
    if (!row)
        return kd_fail(KDENS_E_NOMEM, "out of memory");
    for (size_t n = 0; n < samples; n++) {
        double best = -1, best_sum = -1;
        int b = 0;
        for (int a = 0; a < classes; a++) {
            double v = 0, sum = 0;
            for (int i = 0; i < members; i++) {
                float p = probs[((size_t)i * samples + n) * classes + a];
                v += weights[i] * p;
                sum += p;
            }
            v /= total;
            row[a] = (float)v;
            if (v > best || (v == best && sum > best_sum))
                best = v, best_sum = sum, b = a;
        }
        decisions[n] = b;
        if (scores)
            memcpy(scores + n * classes, row, sizeof(float) * classes);
    }
    free(row);
    return KDENS_OK;
}

kdens_status kdens_loss2weight(const double *losses, int n, int relative, double factor,
                               double *weights)
{
    if (!losses || !weights || n < 1 || !isfinite(factor))
        return kd_fail(KDENS_E_ARG, "NULL argument, no members or a bad factor");
    double lo = losses[0];
    for (int i = 0; i < n; i++) {
        if (!(losses[i] > 0) || !isfinite(losses[i]))
            return kd_fail(KDENS_E_ARG, "value %d is %g, not finite and above 0", i, losses[i]);
        lo = losses[i] < lo ? losses[i] : lo;
    }
    double wmax = 0, wmin = INFINITY;
    for (int i = 0; i < n; i++) {
        weights[i] = losses[i] / lo;
        wmax = weights[i] > wmax ? weights[i] : wmax;
        wmin = weights[i] < wmin ? weights[i] : wmin;
    }
    for (int i = 0; i < n; i++) {
        if (!relative)
            weights[i] *= factor / wmax;
        else if (wmax > wmin) /* all equal: the reference divides by zero; keep them */
            weights[i] += factor * (weights[i] - wmin) / (wmax - wmin) * weights[i];
    }
    double mean = 0;
    for (int i = 0; i < n; i++)
        mean += weights[i] / n;
    for (int i = 0; i < n; i++)
        weights[i] /= mean;
    return KDENS_OK;
}

kdens_status kdens_agreement(const float *probs, int members, size_t samples, int classes,
                             const int32_t *labels, double *agreement, double *oracle)
{
    kdens_status st = check_probs(probs, members, samples, classes);
    if (st != KDENS_OK)
        return st;
    if (oracle && !labels)
        return kd_fail(KDENS_E_ARG, "the oracle accuracy needs labels");
    int *pred = malloc(sizeof(int) * (size_t)members * (samples ? samples : 1));
    if (!pred)
        return kd_fail(KDENS_E_NOMEM, "out of memory");
    for (int i = 0; i < members; i++)
        for (size_t n = 0; n < samples; n++)
            pred[(size_t)i * samples + n] = argmax(probs + ((size_t)i * samples + n) * classes,
                                                   classes);
    if (agreement)
        for (int i = 0; i < members; i++)
            for (int j = 0; j < members; j++) {
                size_t same = 0;
                for (size_t n = 0; n < samples; n++)
                    same += pred[(size_t)i * samples + n] == pred[(size_t)j * samples + n];
                agreement[i * members + j] = samples ? (double)same / samples : 1.0;
            }
    if (oracle) {
        size_t right = 0;
        for (size_t n = 0; n < samples; n++) {
            bool any = false;
            for (int i = 0; i < members && !any; i++)
                any = pred[(size_t)i * samples + n] == labels[n];
            right += any;
        }
        *oracle = samples ? (double)right / samples : 0;
    }
    free(pred);
    return KDENS_OK;
}

kdens_status kdens_diversity(const float *probs, int members, size_t samples, int classes,
                             const int32_t *labels, double *disagreement, double *kappa,
                             double *yules_q, double *error_correlation, double *kendall)
{
    kdens_status st = check_probs(probs, members, samples, classes);
    if (st != KDENS_OK)
        return st;
    if (!labels)
        return kd_fail(KDENS_E_ARG, "NULL labels");
    int *pred = malloc(sizeof(int) * (size_t)members * (samples ? samples : 1));
    double *freq = calloc((size_t)members * classes, sizeof(double));
    if (!pred || !freq) {
        free(pred);
        free(freq);
        return kd_fail(KDENS_E_NOMEM, "out of memory");
    }
    for (int i = 0; i < members; i++)
        for (size_t n = 0; n < samples; n++) {
            int c = argmax(probs + ((size_t)i * samples + n) * classes, classes);
            pred[(size_t)i * samples + n] = c;
            freq[(size_t)i * classes + c] += 1.0 / (double)samples;
        }
    for (int i = 0; i < members; i++)
        for (int j = 0; j < members; j++) {
            const int *pi = pred + (size_t)i * samples, *pj = pred + (size_t)j * samples;
            double same = 0, n11 = 0, n00 = 0, n10 = 0, n01 = 0, tau = 0;
            for (size_t n = 0; n < samples; n++) {
                same += pi[n] == pj[n];
                bool ri = pi[n] == labels[n], rj = pj[n] == labels[n];
                n11 += ri && rj, n00 += !ri && !rj, n10 += ri && !rj, n01 += !ri && rj;
                if (kendall && classes > 1) {
                    const float *a = probs + ((size_t)i * samples + n) * classes;
                    const float *b = probs + ((size_t)j * samples + n) * classes;
                    int discordant = 0;
                    for (int x = 0; x < classes; x++)
                        for (int y = x + 1; y < classes; y++)
                            discordant += ((a[x] > a[y]) - (a[x] < a[y])) *
                                              ((b[x] > b[y]) - (b[x] < b[y])) < 0;
                    tau += 2.0 * discordant / ((double)classes * (classes - 1));
                }
            }
            double ns = samples ? (double)samples : 1.0, po = same / ns;
            size_t at = (size_t)i * members + j;
            if (disagreement)
                disagreement[at] = 1 - po;
            if (kappa) {
                double pe = 0;
                for (int c = 0; c < classes; c++)
                    pe += freq[(size_t)i * classes + c] * freq[(size_t)j * classes + c];
                kappa[at] = pe < 1 ? (po - pe) / (1 - pe) : 1.0;
            }
            if (yules_q) {
                double den = n11 * n00 + n01 * n10;
                yules_q[at] = den > 0 ? (n11 * n00 - n01 * n10) / den : 0.0;
            }
            if (error_correlation) { /* Pearson of the two error indicators */
                double ei = (n00 + n01) / ns, ej = (n00 + n10) / ns, both = n00 / ns;
                double var = ei * (1 - ei) * ej * (1 - ej);
                error_correlation[at] = var > 0 ? (both - ei * ej) / sqrt(var) : 0.0;
            }
            if (kendall)
                kendall[at] = samples ? tau / ns : 0.0;
        }
    free(pred);
    free(freq);
    return KDENS_OK;
}

/* ---- vote analysis (the reference's VotingAnalyze) ------------------------------------- */

/* Does member p rank class a above class b?  Ballots order classes by
 * probability, ties lower class first (as kdens_fuse). */
static bool prefers(const float *p, int a, int b) { return p[a] > p[b] || (p[a] == p[b] && a < b); }

/* Class a's probability summed over the members, for sample n. */
static double summed(const float *probs, int members, size_t samples, size_t n, int classes,
                     int a)
{
    double s = 0;
    for (int i = 0; i < members; i++)
        s += probs[((size_t)i * samples + n) * classes + a];
    return s;
}

/* pair[a][b]: the members preferring class a to class b on sample n. */
static void pairwise(const float *probs, int members, size_t samples, size_t n, int classes,
                     int *pair)
{
    memset(pair, 0, sizeof(int) * (size_t)classes * classes);
    for (int i = 0; i < members; i++) {
        const float *p = probs + ((size_t)i * samples + n) * classes;
        for (int a = 0; a < classes; a++)
            for (int b = 0; b < classes; b++)
                pair[a * classes + b] += a != b && prefers(p, a, b);
    }
}

/* The statistics as this version knows them; copied out as far as the
 * caller's struct reaches (its size field). */
static kdens_status vote_analysis(const float *probs, int members, size_t samples, int classes,
                                  const int32_t *labels, kdens_vote_stats *stats,
                                  uint64_t *winner_votes, uint64_t *winner_votes_correct,
                                  uint64_t *label_votes)
{
    kdens_status st = check_probs(probs, members, samples, classes);
    if (st != KDENS_OK)
        return st;
    for (size_t n = 0; n < samples; n++)
        if (labels[n] < 0 || labels[n] >= classes)
            return kd_fail(KDENS_E_ARG, "sample %zu: label %d is not a class of %d", n,
                           (int)labels[n], classes);
    int *votes = calloc((size_t)classes, sizeof(int));
    int *top = malloc(sizeof(int) * (size_t)members);
    int *pair = malloc(sizeof(int) * (size_t)classes * classes);
    if (!votes || !top || !pair) {
        free(votes);
        free(top);
        free(pair);
        return kd_fail(KDENS_E_NOMEM, "out of memory");
    }
    memset(stats, 0, sizeof *stats);
    stats->size = sizeof *stats;
    stats->samples = samples;
    for (int v = 0; v <= members; v++) {
        if (winner_votes)
            winner_votes[v] = 0;
        if (winner_votes_correct)
            winner_votes_correct[v] = 0;
        if (label_votes)
            label_votes[v] = 0;
    }
    double distinct_sum = 0;
    for (size_t n = 0; n < samples; n++) {
        memset(votes, 0, sizeof(int) * (size_t)classes);
        int distinct = 0;
        for (int i = 0; i < members; i++) {
            top[i] = argmax(probs + ((size_t)i * samples + n) * classes, classes);
            distinct += votes[top[i]]++ == 0;
        }
        int plur = 0; /* most first places; ties as kdens_fuse's plurality */
        for (int a = 1; a < classes; a++)
            if (votes[a] > votes[plur] ||
                (votes[a] == votes[plur] && summed(probs, members, samples, n, classes, a) >
                                                summed(probs, members, samples, n, classes, plur)))
                plur = a;
        bool plur_right = plur == labels[n];
        distinct_sum += distinct;
        stats->unanimous += votes[plur] == members;
        stats->plurality_correct += plur_right;
        if (winner_votes)
            winner_votes[votes[plur]]++;
        if (winner_votes_correct && plur_right)
            winner_votes_correct[votes[plur]]++;
        if (label_votes)
            label_votes[votes[labels[n]]]++;
        stats->majority += 2 * votes[plur] > members;
        stats->majority_correct += 2 * votes[plur] > members && plur_right;
        pairwise(probs, members, samples, n, classes, pair);
        int cw = condorcet_winner(pair, classes);
        if (cw >= 0) {
            stats->condorcet_exists++;
            stats->condorcet_correct += cw == labels[n];
            stats->condorcet_is_plurality += cw == plur;
            stats->plurality_correct_with_condorcet += plur_right;
        } else {
            stats->plurality_correct_without_condorcet += plur_right;
        }
    }
    stats->mean_distinct = samples ? distinct_sum / samples : 0;
    free(votes);
    free(top);
    free(pair);
    return KDENS_OK;
}

kdens_status kdens_vote_analysis(const float *probs, int members, size_t samples, int classes,
                                 const int32_t *labels, kdens_vote_stats *stats,
                                 uint64_t *winner_votes, uint64_t *winner_votes_correct,
                                 uint64_t *label_votes)
{
    if (!stats || !labels)
        return kd_fail(KDENS_E_ARG, "NULL statistics or labels");
    const size_t first_version = offsetof(kdens_vote_stats, mean_distinct) + sizeof(double);
    if (stats->size < first_version)
        return kd_fail(KDENS_E_ARG, "the statistics' size field is %zu, not "
                       "sizeof(kdens_vote_stats) (KDENS_VOTE_STATS_INIT)", stats->size);
    kdens_vote_stats all;
    kdens_status st = vote_analysis(probs, members, samples, classes, labels, &all,
                                    winner_votes, winner_votes_correct, label_votes);
    if (st == KDENS_OK) {
        size_t caller = stats->size;
        memcpy(stats, &all, KD_MIN(caller, sizeof all));
        stats->size = caller;
    }
    return st;
}
