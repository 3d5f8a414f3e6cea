/* dec.c — exact decimal arithmetic (see dec.h). */
#include "dec.h"

#include <string.h>

dec_u128 dec_pow10(int n)
{
    dec_u128 p = 1;
    for (int i = 0; i < n; i++)
        p *= 10;
    return p;
}

dec_u256 dec_mul_wide(dec_u128 a, dec_u128 b)
{
    uint64_t a0 = (uint64_t)a, a1 = (uint64_t)(a >> 64);
    uint64_t b0 = (uint64_t)b, b1 = (uint64_t)(b >> 64);
    dec_u128 p00 = (dec_u128)a0 * b0, p01 = (dec_u128)a0 * b1;
    dec_u128 p10 = (dec_u128)a1 * b0, p11 = (dec_u128)a1 * b1;
    dec_u128 mid = (p00 >> 64) + (uint64_t)p01 + (uint64_t)p10; /* < 3 · 2^64 */
    dec_u128 hi = p11 + (p01 >> 64) + (p10 >> 64) + (mid >> 64);
    dec_u256 r;

    r.w[0] = (uint64_t)p00;
    r.w[1] = (uint64_t)mid;
    r.w[2] = (uint64_t)hi;
    r.w[3] = (uint64_t)(hi >> 64);
    return r;
}

int dec_cmp_wide(dec_u256 a, dec_u256 b)
{
    for (int i = 3; i >= 0; i--)
        if (a.w[i] != b.w[i])
            return a.w[i] < b.w[i] ? -1 : 1;
    return 0;
}

/* v /= d in place; returns the remainder. */
static uint64_t div_small(dec_u256 *v, uint64_t d)
{
    dec_u128 rem = 0;
    for (int i = 3; i >= 0; i--) {
        dec_u128 cur = (rem << 64) | v->w[i];
        v->w[i] = (uint64_t)(cur / d);
        rem = cur % d;
    }
    return (uint64_t)rem;
}

dec_u128 dec_mul_trunc(dec_u128 a, dec_u128 b, int places)
{
    dec_u256 p;
    int left = places;

    if ((a >> 32) == 0 && (b >> 32) == 0 && places <= 19) /* the common case, D = 4 */
        return (uint64_t)a * (uint64_t)b / (uint64_t)dec_pow10(places);
    if ((a >> 64) == 0 && (b >> 64) == 0)
        return a * b / dec_pow10(places);
    p = dec_mul_wide(a, b);
    while (left > 0) { /* ⌊⌊x/m⌋/n⌋ = ⌊x/(mn)⌋ */
        int step = left > 19 ? 19 : left;
        div_small(&p, (uint64_t)dec_pow10(step));
        left -= step;
    }
    return ((dec_u128)p.w[1] << 64) | p.w[0];
}

dec_u128 dec_frac_trunc(dec_u128 num, dec_u128 den, int places)
{
    dec_u128 q = 0;
    for (int i = 0; i < places; i++) {
        num *= 10; /* num < den < 2^124: no wrap */
        q = q * 10 + num / den;
        num %= den;
    }
    return q;
}

size_t dec_format_wide(char *buf, dec_u256 v, int places)
{
    char digits[DEC_TEXT_MAX];
    size_t n = 0, out = 0, end;
    dec_u256 zero = {{0, 0, 0, 0}};

    do
        digits[n++] = (char)('0' + div_small(&v, 10));
    while (dec_cmp_wide(v, zero) != 0 && n < sizeof(digits));
    while (n <= (size_t)places) /* at least one digit before the point */
        digits[n++] = '0';
    for (size_t i = n; i-- > (size_t)places;)
        buf[out++] = digits[i];
    end = out;
    if (places > 0) {
        buf[out++] = '.';
        for (size_t i = (size_t)places; i-- > 0;) {
            buf[out++] = digits[i];
            if (digits[i] != '0')
                end = out;
        }
    }
    buf[end] = '\0';
    return end;
}

size_t dec_format(char *buf, dec_u128 v, int places)
{
    dec_u256 w = {{(uint64_t)v, (uint64_t)(v >> 64), 0, 0}};
    return dec_format_wide(buf, w, places);
}

bool dec_parse(const char *s, size_t len, int max_places, dec_u128 *units, int *places)
{
    size_t i = 0;
    int digits = 0, frac = 0, exp = 0, exp_sign = 1, p;
    dec_u128 v = 0;
    bool any = false;

    for (; i < len && s[i] >= '0' && s[i] <= '9'; i++, any = true)
        if (v != 0 || s[i] != '0') {
            if (++digits > 38)
                return false;
            v = v * 10 + (unsigned)(s[i] - '0');
        }
    if (i < len && s[i] == '.')
        for (i++; i < len && s[i] >= '0' && s[i] <= '9'; i++, any = true) {
            if (v != 0 || s[i] != '0')
                if (++digits > 38)
                    return false;
            v = v * 10 + (unsigned)(s[i] - '0');
            frac++;
        }
    if (!any)
        return false;
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-'))
            exp_sign = s[i++] == '-' ? -1 : 1;
        if (i == len)
            return false;
        for (; i < len && s[i] >= '0' && s[i] <= '9'; i++)
            if ((exp = exp * 10 + (s[i] - '0')) > 1000)
                return false;
    }
    if (i != len)
        return false;
    p = frac - exp_sign * exp;
    for (; p > 0 && v % 10 == 0 && v != 0; p--)
        v /= 10;
    if (v == 0)
        p = 0;
    for (; p < 0; p++) {
        if (++digits > 38)
            return false;
        v *= 10;
    }
    if (p > max_places)
        return false;
    *units = v;
    *places = p;
    return true;
}
