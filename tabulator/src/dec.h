/* dec.h — exact decimal arithmetic for the multi-winner counts (TABULATION-MULTI.md §2).
 *
 * A vote quantity is a non-negative integer counting units of 10^-places, held in an
 * unsigned 128-bit integer. Unsigned on purpose: every quantity of a count is >= 0, and
 * signed 128-bit multiplication under UBSan needs a runtime helper (__muloti4) that
 * libgcc lacks. Callers keep every sum below DEC_LIMIT (checked once per count against
 * the ballots' total), so additions never wrap; the two products that can exceed 128
 * bits (value × surplus fraction at 20 places, tally × percentage) go through the
 * 256-bit helpers below.
 *
 * No binary floating point anywhere: numbers are parsed from and printed to text. */
#ifndef TAB_DEC_H
#define TAB_DEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

__extension__ typedef unsigned __int128 dec_u128;

/* Every amount of a count stays below this (2^124), so a sum of two of them, or ten
 * times one, still fits. */
#define DEC_LIMIT ((dec_u128)1 << 124)
#define DEC_MAX_POW10 38

/* 10^n for 0 <= n <= 38. */
dec_u128 dec_pow10(int n);

/* trunc_places(a × b) where a and b count units of 10^-places (places <= 20): the
 * product ⌊a·b / 10^places⌋, exact even when a·b needs more than 128 bits. */
dec_u128 dec_mul_trunc(dec_u128 a, dec_u128 b, int places);

/* ⌊num · 10^places / den⌋ for num < den (a fraction below 1 cut to places digits),
 * digit by digit so num · 10^places never has to fit. den < DEC_LIMIT. */
dec_u128 dec_frac_trunc(dec_u128 num, dec_u128 den, int places);

/* Writes v / 10^places in plain decimal notation: no exponent, no trailing zeros after
 * the point, no point for whole numbers ("6", "7.2501", "0.0003"). buf holds at least
 * DEC_TEXT_MAX bytes. Returns the length. */
#define DEC_TEXT_MAX 96
size_t dec_format(char *buf, dec_u128 v, int places);

/* A 256-bit unsigned integer, little-endian 64-bit limbs: just enough to compare and
 * print exact products (the bottoms_up_percentage threshold). */
typedef struct dec_u256 {
    uint64_t w[4];
} dec_u256;

dec_u256 dec_mul_wide(dec_u128 a, dec_u128 b);
int dec_cmp_wide(dec_u256 a, dec_u256 b); /* -1, 0, 1 */
size_t dec_format_wide(char *buf, dec_u256 v, int places);

/* Parses a JSON number token exactly ("15.555", "1.5e1") into *units / 10^*places with
 * the fewest places (trailing zeros dropped). Returns false when the text is not a
 * non-negative number or needs more than max_places places or 38 digits. */
bool dec_parse(const char *s, size_t len, int max_places, dec_u128 *units, int *places);

#endif
