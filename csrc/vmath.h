/* vmath.h — exp and tanh of a float and of a double, in straight-line arithmetic that the
 * compiler vectorises in the FNN_CLONES loops (libm's scalar expf and tanhf took 7.5 and 13.6 ns
 * an element, NumPy's vector tanh 0.16: a tanh network trained 42 % slower than a relu one; libm's
 * exp made float64 softmax 2.2x float32's). Cephes' expf, tanhf, exp and tanh: the same reductions,
 * polynomials and rational function, each operation a plain IEEE one (no FMA contraction, no libm
 * call), so every clone gives the same bits. Measured (tests/test_kernels.py): float tanh within
 * 2 ulp of float64, float exp within 2 ulp up to float32's overflow, sigmoid (e / (1 + e) below 0)
 * within 3; double exp and tanh within 2 ulp of long double (exp over [-708.4, 709.78]; measured
 * at most 1.2 eps relative). Special values: exp(NaN) and tanh(NaN) are NaN (a signalling NaN
 * comes back as it went in), exp(-inf) = 0, exp(+inf) = +inf, tanh(+-inf) = +-1, tanh(+-0) =
 * +-0; an exp whose result would be subnormal is 0, as the kernels' flush to zero makes it
 * inside the engine (libm, through ops.activation, gave the subnormal). */
#ifndef FASTNN_VMATH_H
#define FASTNN_VMATH_H
#include <math.h>
#include <stdint.h>
#include <string.h>

#define FNN_EXPF_HI 88.72283935546875f /* ln(FLT_MAX) rounded up: above, +inf */
#define FNN_EXPF_LO -87.3365478515625f /* below: 0 (the result would be subnormal) */

static inline float fnn_expf(float x) {
    const int nan = x != x;
    float c = nan ? 0.0f : x;
    c = c > FNN_EXPF_HI ? FNN_EXPF_HI : c < FNN_EXPF_LO ? FNN_EXPF_LO : c;
    /* n = round(c / ln 2), by the 1.5 * 2^23 shift: exact below 2^22, no libm call */
    const float fx = (c * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = c - fx * 0.693359375f; /* ln 2 in two parts: the first exact in fx's range */
    r = r - fx * -2.12194440e-4f;
    const float z = r * r;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * z + r + 1.0f;
    /* 2^n, n in [-126, 128]: n = 128 (c above 88.376) as 2^127, then times 2 (exact) */
    const int32_t n = (int32_t)fx, top = n > 127;
    const int32_t bits = ((top ? 127 : n) + 127) << 23;
    float s;
    memcpy(&s, &bits, sizeof s);
    float y = p * s;
    y = top ? y * 2.0f : y;
    y = x > FNN_EXPF_HI ? INFINITY : x < FNN_EXPF_LO ? 0.0f : y;
    return nan ? x : y;
}

static inline float fnn_tanhf(float x) {
    const float ax = x < 0 ? -x : x;
    /* |x| < 0.625: odd polynomial */
    const float z = x * x;
    float p = -5.70498872745e-3f;
    p = p * z + 2.06390887954e-2f;
    p = p * z - 5.37397155531e-2f;
    p = p * z + 1.33314422036e-1f;
    p = p * z - 3.33332819422e-1f;
    const float small = p * z * x + x;
    /* else 1 - 2 / (exp(2|x|) + 1), the sign of x; exp's +inf above 44 gives 1 */
    const float e = fnn_expf(ax + ax);
    float big = 1.0f - 2.0f / (e + 1.0f);
    big = x < 0 ? -big : big;
    const float y = ax < 0.625f ? small : big;
    return x != x || x == 0 ? x : y; /* NaN, and the sign of a zero */
}

/* exp of a double: x = n ln 2 + r, |r| <= ln 2 / 2 (ln 2 in two parts, the first exact times any
 * n in range), exp(r) = 1 + 2 r P(r^2) / (Q(r^2) - r P(r^2)), then times 2^n built in the
 * exponent's bits. n is rounded by the 1.5 * 2^52 shift and read back from the shifted value's
 * low bits as an integer: 64-bit integer adds and shifts, which AVX2 has (a double-to-int64
 * conversion, which it lacks, kept the loops scalar). */
#define FNN_EXP_HI 709.782712893383973096 /* ln(DBL_MAX) rounded down: above, +inf */
#define FNN_EXP_LO -708.396418532264106224 /* ln(DBL_MIN): below, 0 (a subnormal result) */

static inline double fnn_exp(double x) {
    const int nan = x != x;
    double c = nan ? 0.0 : x;
    c = c > FNN_EXP_HI ? FNN_EXP_HI : c < FNN_EXP_LO ? FNN_EXP_LO : c;
    const double shift = 6755399441055744.0; /* 1.5 * 2^52 */
    const double sn = c * 1.4426950408889634074 + shift;
    const double fx = sn - shift; /* n = round(c / ln 2), exact */
    double r = c - fx * 6.93145751953125e-1;
    r = r - fx * 1.42860682030941723212e-6;
    const double z = r * r;
    double p = 1.26177193074810590878e-4;
    p = p * z + 3.02994407707441961300e-2;
    p = p * z + 9.99999999999999999910e-1;
    p = p * r;
    double q = 3.00198505138664455042e-6;
    q = q * z + 2.52448340349684104192e-3;
    q = q * z + 2.27265548208155028766e-1;
    q = q * z + 2.00000000000000000009e0;
    const double e = 1.0 + 2.0 * (p / (q - p));
    /* 2^n, n in [-1022, 1024]: n = 1024 (c above 709.436) as 2^1023, then times 2 (exact) */
    int64_t ib, is;
    memcpy(&ib, &sn, sizeof ib);
    memcpy(&is, &shift, sizeof is);
    const int64_t n = ib - is, top = n > 1023;
    const int64_t bits = (int64_t)((uint64_t)((top ? 1023 : n) + 1023) << 52);
    double sc;
    memcpy(&sc, &bits, sizeof sc);
    double y = e * sc;
    y = top ? y * 2.0 : y;
    y = x > FNN_EXP_HI ? INFINITY : x < FNN_EXP_LO ? 0.0 : y;
    return nan ? x : y;
}

/* tanh of a double: |x| < 0.625, x + x^3 P(x^2) / Q(x^2); else 1 - 2 / (exp(2|x|) + 1), the sign
 * of x (exp's +inf above 354.9 gives 1) */
static inline double fnn_tanh(double x) {
    const double ax = x < 0 ? -x : x;
    const double z = x * x;
    double p = -9.64399179425052238628e-1;
    p = p * z - 9.92877231001918586564e1;
    p = p * z - 1.61468768441708447952e3;
    double q = z + 1.12811678491632931402e2;
    q = q * z + 2.23548839060100448583e3;
    q = q * z + 4.84406305325125486048e3;
    const double small = x + (x * z) * (p / q);
    const double e = fnn_exp(ax + ax);
    double big = 1.0 - 2.0 / (e + 1.0);
    big = x < 0 ? -big : big;
    const double y = ax < 0.625 ? small : big;
    return x != x || x == 0 ? x : y; /* NaN, and the sign of a zero */
}

#endif
