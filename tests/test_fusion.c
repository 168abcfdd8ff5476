/* Fusion rules on hand-worked ballots: the Tennessee capital election (a
 * textbook profile where plurality, instant run-off and the Condorcet
 * winner disagree), ties, two classes, a single member, a Condorcet cycle. */
#include "testutil.h"

#include <stddef.h>

#include <math.h>

enum { MEM = 0, NAS = 1, CHA = 2, KNO = 3 };

/* 100 voters: 42 M>N>C>K, 26 N>C>K>M, 15 C>K>N>M, 17 K>C>N>M */
static float *tennessee(void)
{
    static const struct {
        int count, order[4];
    } groups[4] = {{42, {MEM, NAS, CHA, KNO}},
                   {26, {NAS, CHA, KNO, MEM}},
                   {15, {CHA, KNO, NAS, MEM}},
                   {17, {KNO, CHA, NAS, MEM}}};
    float *p = malloc(sizeof(float) * 100 * 4);
    int i = 0;
    for (int g = 0; g < 4; g++)
        for (int v = 0; v < groups[g].count; v++, i++)
            for (int r = 0; r < 4; r++)
                p[i * 4 + groups[g].order[r]] = 0.4f - 0.1f * r;
    return p;
}

static int decide(kdens_fusion rule, const float *p, int members, int classes)
{
    int32_t d = -1;
    ASSERT_OK(kdens_fuse(rule, p, members, 1, classes, &d, NULL));
    return d;
}

static void test_tennessee(void **state)
{
    (void)state;
    float *p = tennessee();
    assert_int_equal(decide(KDENS_FUSE_PLURALITY, p, 100, 4), MEM);
    assert_int_equal(decide(KDENS_FUSE_STV, p, 100, 4), KNO);
    static const kdens_fusion nashville[] = {
        KDENS_FUSE_MEAN,    KDENS_FUSE_SUM,      KDENS_FUSE_BORDA,   KDENS_FUSE_DOWDALL,
        KDENS_FUSE_BORDA_SYMMETRIC, KDENS_FUSE_COPELAND, KDENS_FUSE_SIMPSON, KDENS_FUSE_SCHULZE,
        KDENS_FUSE_BALDWIN, KDENS_FUSE_NANSON,   KDENS_FUSE_BUCKLIN, KDENS_FUSE_CONDORCET,
        KDENS_FUSE_KEMENY};
    for (size_t i = 0; i < sizeof nashville / sizeof *nashville; i++)
        if (decide(nashville[i], p, 100, 4) != NAS)
            fail_msg("%s does not elect Nashville", kdens_fusion_name(nashville[i]));
    /* Borda scores by hand: M 126, N 194, C 173, K 107 */
    int32_t d;
    float scores[4];
    ASSERT_OK(kdens_fuse(KDENS_FUSE_BORDA, p, 100, 1, 4, &d, scores));
    assert_true(scores[MEM] == 126 && scores[NAS] == 194 && scores[CHA] == 173 &&
                scores[KNO] == 107);
    ASSERT_OK(kdens_fuse(KDENS_FUSE_PLURALITY, p, 100, 1, 4, &d, scores));
    assert_true(scores[MEM] == 42 && scores[KNO] == 17);
    free(p);
}

static void test_ties_and_small_cases(void **state)
{
    (void)state;
    /* two members split: the summed probability decides (0.9 vs 1.1) */
    float split[4] = {0.6f, 0.4f, 0.3f, 0.7f};
    assert_int_equal(decide(KDENS_FUSE_PLURALITY, split, 2, 2), 1);
    assert_int_equal(decide(KDENS_FUSE_BORDA, split, 2, 2), 1);
    /* a perfect tie: the lowest class index */
    float even[4] = {0.6f, 0.4f, 0.4f, 0.6f};
    for (int r = 0; r < kdens_fusion_count(); r++)
        if (decide((kdens_fusion)r, even, 2, 2) != 0)
            fail_msg("%s breaks a perfect tie wrongly", kdens_fusion_name((kdens_fusion)r));
    /* a single member: every rule follows it */
    float one[5] = {0.1f, 0.2f, 0.5f, 0.15f, 0.05f};
    for (int r = 0; r < kdens_fusion_count(); r++)
        if (decide((kdens_fusion)r, one, 1, 5) != 2)
            fail_msg("%s overrules a single member", kdens_fusion_name((kdens_fusion)r));
    /* a Condorcet cycle A>B>C, B>C>A, C>A>B: no winner, so the sum decides */
    float cycle[9] = {0.5f, 0.3f, 0.2f, 0.2f, 0.5f, 0.3f, 0.31f, 0.19f, 0.5f};
    assert_int_equal(decide(KDENS_FUSE_CONDORCET, cycle, 3, 3), 0); /* sums 1.01, .99, 1.0 */
    /* several samples at once, member-major layout */
    float two_samples[2 * 2 * 2] = {0.9f, 0.1f, 0.2f, 0.8f, 0.7f, 0.3f, 0.4f, 0.6f};
    int32_t d[2];
    ASSERT_OK(kdens_fuse(KDENS_FUSE_MEAN, two_samples, 2, 2, 2, d, NULL));
    assert_true(d[0] == 0 && d[1] == 1);
}

static void test_names_and_errors(void **state)
{
    (void)state;
    for (int r = 0; r < kdens_fusion_count(); r++) {
        kdens_fusion back;
        ASSERT_OK(kdens_fusion_from_name(kdens_fusion_name((kdens_fusion)r), &back));
        assert_int_equal(back, r);
    }
    kdens_fusion x;
    ASSERT_STATUS(kdens_fusion_from_name("approval", &x), KDENS_E_NOTFOUND);
    assert_null(kdens_fusion_name(kdens_fusion_count()));
    float bad[4] = {0.5f, NAN, 0.5f, 0.5f};
    int32_t d[2];
    ASSERT_STATUS(kdens_fuse(KDENS_FUSE_MEAN, bad, 2, 1, 2, d, NULL), KDENS_E_ARG);
    assert_non_null(strstr(kdens_errmsg(), "member 0"));
    bad[1] = -0.1f;
    ASSERT_STATUS(kdens_fuse(KDENS_FUSE_BORDA, bad, 2, 1, 2, d, NULL), KDENS_E_ARG);
    ASSERT_STATUS(kdens_fuse(KDENS_FUSE_BORDA, bad, 0, 1, 2, d, NULL), KDENS_E_ARG);
    ASSERT_STATUS(kdens_fuse(kdens_fusion_count(), bad, 2, 1, 2, d, NULL), KDENS_E_ARG);
    ASSERT_STATUS(kdens_fuse(KDENS_FUSE_MEAN, NULL, 2, 1, 2, d, NULL), KDENS_E_ARG);
}

static void test_weights_and_agreement(void **state)
{
    (void)state;
    /* the reference's own example: loss2weight([1e-8, .5, .6, .4, .55, .95], "const", 1.15) */
    double l[3] = {1.0, 2.0, 4.0}, w[3];
    ASSERT_OK(kdens_loss2weight(l, 3, 0, 2.0, w));
    /* l/min = 1,2,4; *2/4 = .5,1,2; mean 7/6 -> .428571, .857143, 1.714286 */
    assert_true(fabs(w[0] - 0.5 / (3.5 / 3)) < 1e-12 && fabs(w[2] - 2.0 / (3.5 / 3)) < 1e-12);
    ASSERT_OK(kdens_loss2weight(l, 3, 1, 1.0, w));
    /* 1 + 0, 2 + (1/3)*2, 4 + 1*4 -> 1, 2.6667, 8; mean 11.6667/3 */
    double mean = (1 + 2 + 2.0 / 3 + 8) / 3;
    assert_true(fabs(w[0] - 1 / mean) < 1e-12 && fabs(w[2] - 8 / mean) < 1e-12);
    double bad[2] = {1.0, 0.0};
    ASSERT_STATUS(kdens_loss2weight(bad, 2, 0, 1.0, w), KDENS_E_ARG);
    /* weighted mean: a heavy member decides */
    float p[4] = {0.9f, 0.1f, 0.2f, 0.8f};
    double heavy[2] = {1.0, 5.0}, zero[2] = {0, 0};
    int32_t d;
    float scores[2];
    ASSERT_OK(kdens_fuse_weighted(p, 2, 1, 2, heavy, &d, scores));
    assert_int_equal(d, 1);
    assert_true(fabsf(scores[1] - (0.1f + 5 * 0.8f) / 6) < 1e-6f);
    ASSERT_STATUS(kdens_fuse_weighted(p, 2, 1, 2, zero, &d, NULL), KDENS_E_ARG);
    /* agreement and oracle: members predict (0,1,1) and (0,0,1); labels (0,0,0) */
    float q[2 * 3 * 2] = {0.9f, 0.1f, 0.2f, 0.8f, 0.3f, 0.7f,
                          0.6f, 0.4f, 0.7f, 0.3f, 0.1f, 0.9f};
    int32_t labels[3] = {0, 0, 0};
    double agree[4], oracle;
    ASSERT_OK(kdens_agreement(q, 2, 3, 2, labels, agree, &oracle));
    assert_true(agree[0] == 1.0 && fabs(agree[1] - 2.0 / 3) < 1e-12 && agree[2] == agree[1]);
    assert_true(fabs(oracle - 2.0 / 3) < 1e-12);
}

static void test_diversity(void **state)
{
    (void)state;
    /* members predict (0,1,1) and (0,0,1), labels (0,0,0): member 0 right on sample 0,
     * member 1 right on samples 0 and 1 */
    float q[2 * 3 * 2] = {0.9f, 0.1f, 0.2f, 0.8f, 0.3f, 0.7f,
                          0.6f, 0.4f, 0.7f, 0.3f, 0.1f, 0.9f};
    int32_t labels[3] = {0, 0, 0};
    double dis[4], kap[4], yq[4], ec[4], kt[4];
    ASSERT_OK(kdens_diversity(q, 2, 3, 2, labels, dis, kap, yq, ec, kt));
    assert_true(dis[0] == 0 && fabs(dis[1] - 1.0 / 3) < 1e-12);
    /* kappa: po 2/3; member 0 predicts 0 1/3, 1 2/3; member 1: 2/3, 1/3; pe = 4/9 */
    assert_true(fabs(kap[1] - (2.0 / 3 - 4.0 / 9) / (1 - 4.0 / 9)) < 1e-12);
    assert_true(kap[0] == 1.0);
    /* correctness: N11 = 1, N00 = 1, N10 = 0, N01 = 1 -> Q = 1 */
    assert_true(yq[1] == 1.0);
    /* errors e0 = (0,1,1), e1 = (0,0,1): Pearson = (1/3 - 2/9) / sqrt(2/9 * 2/9) = 1/2 */
    assert_true(fabs(ec[1] - 0.5) < 1e-12);
    /* rankings disagree on samples 1 only: Kendall distance 1/3 */
    assert_true(fabs(kt[1] - 1.0 / 3) < 1e-12 && kt[0] == 0);
    ASSERT_STATUS(kdens_diversity(q, 2, 3, 2, NULL, dis, NULL, NULL, NULL, NULL), KDENS_E_ARG);
}


/* Vote statistics on constructed profiles with known answers. */
static void test_vote_analysis(void **state)
{
    (void)state;
    /* Tennessee as one sample: plurality Memphis (42 of 100), Condorcet
     * winner Nashville; label Nashville */
    float *p = tennessee();
    int32_t label = NAS;
    kdens_vote_stats s = KDENS_VOTE_STATS_INIT;
    uint64_t wv[101], wvc[101], lv[101];
    ASSERT_OK(kdens_vote_analysis(p, 100, 1, 4, &label, &s, wv, wvc, lv));
    assert_int_equal(s.samples, 1);
    assert_int_equal(s.unanimous, 0);
    assert_int_equal(s.majority, 0);
    assert_int_equal(s.plurality_correct, 0);
    assert_int_equal(s.condorcet_exists, 1);
    assert_int_equal(s.condorcet_correct, 1);
    assert_int_equal(s.condorcet_is_plurality, 0);
    assert_int_equal(s.plurality_correct_with_condorcet, 0);
    assert_true(s.mean_distinct == 4);
    assert_int_equal(wv[42], 1);
    assert_int_equal(wvc[42], 0);
    assert_int_equal(lv[26], 1); /* 26 first places for Nashville */
    free(p);

    /* 3 members, 4 samples, 3 classes (member-major):
     *  s0: all vote 0 (unanimous, label 0)
     *  s1: votes 1,1,2 (majority 1, label 2: wrong)
     *  s2: a cycle 0>1>2, 1>2>0, 2>0>1 (no Condorcet winner; label 0)
     *  s3: votes 2,0,1 ranked so that 0 is the Condorcet winner (label 0) */
    static const float q[3][4][3] = {
        {{.8f, .1f, .1f}, {.1f, .8f, .1f}, {.5f, .3f, .2f}, {.25f, .05f, .7f}},
        {{.7f, .2f, .1f}, {.2f, .7f, .1f}, {.2f, .5f, .3f}, {.6f, .1f, .3f}},
        {{.6f, .3f, .1f}, {.1f, .2f, .7f}, {.3f, .1f, .6f}, {.3f, .6f, .1f}},
    };
    const int32_t labels[4] = {0, 2, 0, 0};
    ASSERT_OK(kdens_vote_analysis(&q[0][0][0], 3, 4, 3, labels, &s, wv, wvc, lv));
    assert_int_equal(s.unanimous, 1);
    assert_int_equal(s.majority, 2);         /* s0 and s1 */
    assert_int_equal(s.majority_correct, 1); /* s0 */
    /* s2: one vote each, ties broken by the summed probability: class 2 (1.1) */
    /* s3: one vote each, sums 1.15, 0.75, 1.1: class 0 */
    assert_int_equal(s.plurality_correct, 2); /* s0, s3 */
    assert_int_equal(s.condorcet_exists, 3);  /* s0 (0), s1 (1), s3 (0: 0>2 by 2 of 3, 0>1 by 2) */
    assert_int_equal(s.condorcet_correct, 2);
    assert_int_equal(s.condorcet_is_plurality, 3);
    assert_int_equal(s.plurality_correct_with_condorcet, 2);
    assert_int_equal(s.plurality_correct_without_condorcet, 0);
    assert_true(fabs(s.mean_distinct - (1 + 2 + 3 + 3) / 4.0) < 1e-12);
    assert_int_equal(wv[3], 1);
    assert_int_equal(wv[2], 1);
    assert_int_equal(wv[1], 2);
    assert_int_equal(wvc[1], 1);
    assert_int_equal(lv[3], 1); /* s0 */
    assert_int_equal(lv[0], 0);
    assert_int_equal(lv[1], 3); /* s1: class 2 got 1; s2, s3: class 0 got 1 */
    /* bad input */
    int32_t bad_label[4] = {0, 3, 0, 0};
    ASSERT_STATUS(kdens_vote_analysis(&q[0][0][0], 3, 4, 3, bad_label, &s, NULL, NULL, NULL),
                  KDENS_E_ARG);
    ASSERT_STATUS(kdens_vote_analysis(&q[0][0][0], 3, 4, 3, NULL, &s, NULL, NULL, NULL),
                  KDENS_E_ARG);
    float nan_p[3] = {NAN, 0, 0};
    ASSERT_STATUS(kdens_vote_analysis(nan_p, 1, 1, 3, labels, &s, NULL, NULL, NULL), KDENS_E_ARG);
    /* the size field: 0 (not initialised) or below the first version's
     * fields is refused, and the caller's size is kept */
    kdens_vote_stats sized;
    memset(&sized, 0, sizeof sized);
    ASSERT_STATUS(kdens_vote_analysis(&q[0][0][0], 3, 4, 3, labels, &sized, NULL, NULL, NULL),
                  KDENS_E_ARG);
    sized.size = offsetof(kdens_vote_stats, mean_distinct);
    ASSERT_STATUS(kdens_vote_analysis(&q[0][0][0], 3, 4, 3, labels, &sized, NULL, NULL, NULL),
                  KDENS_E_ARG);
    sized.size = sizeof sized;
    ASSERT_OK(kdens_vote_analysis(&q[0][0][0], 3, 4, 3, labels, &sized, NULL, NULL, NULL));
    assert_int_equal(sized.size, sizeof sized);
    assert_int_equal(sized.majority, 2);
}

/* Kemeny-Young by brute force: every ranking of k classes, scored by the
 * members' pairwise support (ballots by probability, ties to the lower
 * index as the library's stable sort); the best ranking's top, ties by the
 * summed probability, then the lower index.  Independent of the library's
 * dynamic program. */
static int kemeny_brute(const float *probs, int m, size_t samples, size_t n, int k)
{
    int pair[9][9] = {{0}};
    double sum[9] = {0};
    for (int i = 0; i < m; i++) {
        const float *p = probs + ((size_t)i * samples + n) * k;
        for (int a = 0; a < k; a++) {
            sum[a] += p[a];
            for (int b = 0; b < k; b++) /* a ranked above b */
                pair[a][b] += a != b && (p[a] > p[b] || (p[a] == p[b] && a < b));
        }
    }
    int perm[9], best_top = 0;
    for (int a = 0; a < k; a++)
        perm[a] = a;
    long best = -1;
    for (;;) {
        long score = 0;
        for (int x = 0; x < k; x++)
            for (int y = x + 1; y < k; y++)
                score += pair[perm[x]][perm[y]];
        if (score > best || (score == best && sum[perm[0]] > sum[best_top]))
            best = score, best_top = perm[0];
        int x = k - 2;
        while (x >= 0 && perm[x] > perm[x + 1])
            x--;
        if (x < 0)
            break;
        int y = k - 1;
        while (perm[y] < perm[x])
            y--;
        int t = perm[x];
        perm[x] = perm[y], perm[y] = t;
        for (int u = x + 1, v = k - 1; u < v; u++, v--)
            t = perm[u], perm[u] = perm[v], perm[v] = t;
    }
    return best_top;
}

static void test_kemeny_exact(void **state)
{
    (void)state;
    /* random profiles, many without a Condorcet winner (few members, near
     * uniform probabilities), up to 9 classes: above the 8 where the rule
     * used to fall back to Copeland */
    enum { SAMPLES = 60 };
    uint64_t seed = 11;
    int without_winner = 0;
    for (int k = 3; k <= 9; k++)
        for (int m = 2; m <= 7; m += k > 7 ? 5 : 1) {
            float *probs = malloc(sizeof(float) * (size_t)m * SAMPLES * k);
            for (size_t i = 0; i < (size_t)m * SAMPLES; i++) {
                float total = 0, *p = probs + i * k;
                for (int a = 0; a < k; a++)
                    total += p[a] = 1.0f + 0.3f * tu_randn(&seed) * tu_randn(&seed) + 1.0f;
                for (int a = 0; a < k; a++)
                    p[a] = p[a] > 0 ? p[a] / total : 0;
            }
            int32_t kem[SAMPLES], cond[SAMPLES];
            ASSERT_OK(kdens_fuse(KDENS_FUSE_KEMENY, probs, m, SAMPLES, k, kem, NULL));
            ASSERT_OK(kdens_fuse(KDENS_FUSE_CONDORCET, probs, m, SAMPLES, k, cond, NULL));
            kdens_vote_stats vs = KDENS_VOTE_STATS_INIT;
            int32_t labels[SAMPLES] = {0};
            ASSERT_OK(kdens_vote_analysis(probs, m, SAMPLES, k, labels, &vs, NULL, NULL, NULL));
            without_winner += (int)(vs.samples - vs.condorcet_exists);
            for (size_t n = 0; n < SAMPLES; n++) {
                int want = kemeny_brute(probs, m, SAMPLES, n, k);
                if (kem[n] != want)
                    fail_msg("k %d, m %d, sample %zu: kemeny %d, brute force %d", k, m, n,
                             (int)kem[n], want);
            }
            free(probs);
        }
    assert_true(without_winner > 100); /* the dynamic program was exercised */
}

static void test_statistics(void **state)
{
    (void)state;
    /* McNemar: counts worked by hand, p-values from the binomial sums */
    enum { N = 12 };
    const int32_t labels[N] = {0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2};
    const int32_t a[N] = {0, 1, 2, 0, 1, 2, 0, 1, 0, 0, 0, 0}; /* wrong on 8, 10, 11 */
    const int32_t b[N] = {0, 0, 0, 0, 1, 2, 0, 1, 2, 0, 0, 0}; /* wrong on 1, 2, 10, 11 */
    uint64_t only_a, only_b;
    double p;
    ASSERT_OK(kdens_mcnemar(a, b, labels, N, &only_a, &only_b, &p));
    assert_int_equal(only_a, 2); /* samples 1, 2 */
    assert_int_equal(only_b, 1); /* sample 8 */
    assert_true(fabs(p - 1.0) < 1e-12); /* 2 (1 + 3) / 8 > 1 */
    ASSERT_OK(kdens_mcnemar(a, a, labels, N, &only_a, &only_b, &p));
    assert_true(only_a == 0 && only_b == 0 && p == 1.0);
    const int32_t all_wrong[N] = {1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0};
    ASSERT_OK(kdens_mcnemar(labels, all_wrong, labels, 5, &only_a, &only_b, &p));
    assert_true(only_a == 5 && only_b == 0 && fabs(p - 2.0 / 32) < 1e-12);
    ASSERT_OK(kdens_mcnemar(labels, all_wrong, labels, 10, NULL, NULL, &p));
    assert_true(fabs(p - 2.0 / 1024) < 1e-15);
    /* the figures on 10,000 images: 230 against 193, p = 0.080;
     * 217 against 198, p = 0.377 (exact sums by Python's math.comb: 0.079930,
     * 0.376941) */
    int32_t *ya = malloc(sizeof(int32_t) * 1000), *yb = malloc(sizeof(int32_t) * 1000),
            *y = calloc(1000, sizeof(int32_t));
    for (int i = 0; i < 1000; i++)
        ya[i] = i < 230 ? 0 : 1, yb[i] = i >= 230 && i < 423 ? 0 : 1;
    ASSERT_OK(kdens_mcnemar(ya, yb, y, 1000, &only_a, &only_b, &p));
    assert_true(only_a == 230 && only_b == 193);
    if (fabs(p - 0.079930) > 1e-6)
        fail_msg("230 vs 193: p %.5f", p);
    for (int i = 0; i < 1000; i++)
        ya[i] = i < 217 ? 0 : 1, yb[i] = i >= 217 && i < 415 ? 0 : 1;
    ASSERT_OK(kdens_mcnemar(ya, yb, y, 1000, &only_a, &only_b, &p));
    if (fabs(p - 0.376941) > 1e-6)
        fail_msg("217 vs 198: p %.5f", p);
    free(ya);
    free(yb);
    free(y);
    ASSERT_STATUS(kdens_mcnemar(NULL, b, labels, N, NULL, NULL, &p), KDENS_E_ARG);

    /* mean, standard error and t-interval */
    const double v[4] = {1, 2, 3, 4};
    double mean, sem, half;
    ASSERT_OK(kdens_mean_ci(v, 4, &mean, &sem, &half));
    assert_true(fabs(mean - 2.5) < 1e-12);
    assert_true(fabs(sem - sqrt(5.0 / 3 / 4)) < 1e-12); /* sample variance 5/3 */
    assert_true(fabs(half - 3.182 * sem) < 1e-9);        /* t(0.975, 3) */
    ASSERT_OK(kdens_mean_ci(v, 1, &mean, &sem, &half));
    assert_true(mean == 1 && sem == 0 && half == 0);
    const double bad[2] = {1, NAN};
    ASSERT_STATUS(kdens_mean_ci(bad, 2, &mean, NULL, NULL), KDENS_E_ARG);
    ASSERT_STATUS(kdens_mean_ci(v, 0, &mean, NULL, NULL), KDENS_E_ARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tennessee),
        cmocka_unit_test(test_ties_and_small_cases),
        cmocka_unit_test(test_names_and_errors),
        cmocka_unit_test(test_weights_and_agreement),
        cmocka_unit_test(test_diversity),
        cmocka_unit_test(test_vote_analysis),
        cmocka_unit_test(test_kemeny_exact),
        cmocka_unit_test(test_statistics),
    };
    return cmocka_run_group_tests_name("fusion", tests, NULL, NULL);
}
