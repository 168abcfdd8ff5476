/* fuse: voting on saved predictions.  Reads a predictions file (written by
 * kdens_predictions_save, `kdens ensemble --save`, or the pipeline's
 * predictions_test.kdp), prints every rule's accuracy, how the votes fall,
 * and the accuracy of the first rule named on the command line as the
 * ensemble grows.
 *
 *   cc fuse.c $(pkg-config --cflags --libs kdens) -o fuse
 *   ./fuse demo-out/fmnist/predictions_test.kdp borda
 */
#include <kdens.h>

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s PREDICTIONS.kdp [RULE]\n", argv[0]);
        return 2;
    }
    kdens_predictions *pr;
    if (kdens_predictions_load(argv[1], &pr) != KDENS_OK) {
        fprintf(stderr, "%s: %s\n", argv[1], kdens_errmsg());
        return 1;
    }
    int members = kdens_predictions_members(pr);
    printf("%d members, %zu samples, %d classes\n", members, kdens_predictions_samples(pr),
           kdens_predictions_classes(pr));
    for (int r = 0; r < kdens_fusion_count(); r++) {
        double acc;
        if (kdens_predictions_accuracy(pr, (kdens_fusion)r, NULL, 0, &acc) != KDENS_OK) {
            fprintf(stderr, "%s\n", kdens_errmsg());
            kdens_predictions_free(pr);
            return 1;
        }
        printf("  %-16s %.4f\n", kdens_fusion_name((kdens_fusion)r), acc);
    }
    kdens_vote_stats votes = KDENS_VOTE_STATS_INIT;
    if (kdens_vote_analysis(kdens_predictions_probs(pr), members, kdens_predictions_samples(pr),
                            kdens_predictions_classes(pr), kdens_predictions_labels(pr), &votes,
                            NULL, NULL, NULL) == KDENS_OK && votes.samples)
        printf("unanimous %.1f%%, Condorcet winner on %.1f%% (right %.1f%% of those)\n",
               100.0 * votes.unanimous / votes.samples,
               100.0 * votes.condorcet_exists / votes.samples,
               votes.condorcet_exists ? 100.0 * votes.condorcet_correct / votes.condorcet_exists
                                      : 0.0);
    kdens_fusion rule = KDENS_FUSE_MEAN;
    if (argc > 2 && kdens_fusion_from_name(argv[2], &rule) != KDENS_OK) {
        fprintf(stderr, "%s\n", kdens_errmsg());
        kdens_predictions_free(pr);
        return 2;
    }
    int *sizes = malloc(sizeof(int) * (size_t)members);
    double *mean = malloc(sizeof(double) * (size_t)members);
    double *ci = malloc(sizeof(double) * (size_t)members);
    for (int i = 0; sizes && i < members; i++)
        sizes[i] = i + 1;
    if (sizes && mean && ci &&
        kdens_accuracy_vs_size(pr, rule, sizes, members, 10, 1, mean, ci) == KDENS_OK)
        for (int i = 0; i < members; i++)
            printf("%s, %2d members: %.4f +- %.4f\n", kdens_fusion_name(rule), sizes[i], mean[i],
                   ci[i]);
    free(sizes);
    free(mean);
    free(ci);
    kdens_predictions_free(pr);
    return 0;
}
