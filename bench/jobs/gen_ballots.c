/* gen_ballots — writes a ballots CSV and its rules for the jobs benchmark (bench/jobs/run).
 *
 *   gen_ballots ROWS CANDIDATES RANKS BALLOTS.csv RULES.json [SEED]
 *
 * Header "id,rank1..rankN"; each ballot ranks 1..RANKS distinct candidates (length uniform,
 * the rest of the row blank), drawn without replacement with popularity 1/(1+i) for the
 * i-th candidate, so first choices are skewed as in real elections and rankings rarely
 * repeat (20 candidates, 10 ranks: almost every ballot is a distinct ranking, the worst
 * case for tabulate's collapsing store). Deterministic for a seed (xorshift64*). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t state = 0x9e3779b97f4a7c15ULL;

static uint64_t next64(void) {
  state ^= state >> 12;
  state ^= state << 25;
  state ^= state >> 27;
  return state * 0x2545f4914f6cdd1dULL;
}

static double unit(void) { return (double)(next64() >> 11) / 9007199254740992.0; }

int main(int argc, char **argv) {
  if (argc < 6) {
    fprintf(stderr, "usage: gen_ballots ROWS CANDIDATES RANKS BALLOTS.csv RULES.json [SEED]\n");
    return 2;
  }
  long rows = atol(argv[1]);
  int ncand = atoi(argv[2]), ranks = atoi(argv[3]);
  if (argc > 6) state ^= strtoull(argv[6], NULL, 10) * 0x9e3779b97f4a7c15ULL;
  if (rows < 0 || ncand < 2 || ncand > 99 || ranks < 1 || ranks > ncand) {
    fprintf(stderr, "gen_ballots: bad sizes\n");
    return 2;
  }
  FILE *rules = fopen(argv[5], "w");
  if (!rules) return perror(argv[5]), 1;
  fprintf(rules, "{\"contest\": \"Benchmark %ld\", \"candidates\": [", rows);
  for (int c = 0; c < ncand; c++) fprintf(rules, "%s{\"name\": \"Cand%02d\"}", c ? ", " : "", c + 1);
  fprintf(rules, "], \"overvote\": \"exhaust_immediately\", \"max_skipped_ranks\": \"unlimited\","
                 " \"max_rankings\": \"max\", \"tiebreak\": \"candidate_order\"}\n");
  if (fclose(rules) != 0) return perror(argv[5]), 1;

  FILE *out = fopen(argv[4], "w");
  if (!out) return perror(argv[4]), 1;
  static char buf[1 << 20];
  setvbuf(out, buf, _IOFBF, sizeof buf);
  fputs("id", out);
  for (int r = 1; r <= ranks; r++) fprintf(out, ",rank%d", r);
  fputc('\n', out);
  double weight[100], total0 = 0;
  for (int c = 0; c < ncand; c++) total0 += weight[c] = 1.0 / (1 + c);
  for (long i = 0; i < rows; i++) {
    double w[100], total = total0;
    memcpy(w, weight, sizeof(double) * (size_t)ncand);
    int len = 1 + (int)(next64() % (uint64_t)ranks);
    fprintf(out, "b%ld", i + 1);
    for (int r = 0; r < ranks; r++) {
      if (r >= len) {
        fputc(',', out);
        continue;
      }
      double x = unit() * total;
      int c = 0;
      while (c < ncand - 1 && (w[c] == 0 || x >= w[c])) x -= w[c++];
      while (w[c] == 0) c--; /* rounding at the end of the scale */
      total -= w[c];
      w[c] = 0;
      fprintf(out, ",Cand%02d", c + 1);
    }
    fputc('\n', out);
  }
  if (fclose(out) != 0) return perror(argv[4]), 1;
  return 0;
}
