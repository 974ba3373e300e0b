/* simd.h — run-time ISA dispatch for the element-wise kernels.
 * FNN_CLONES asks GCC for AVX-512, AVX2 and baseline versions of a function, chosen once by the
 * loader from the CPU (ifunc): no -march flags, and the same results on every CPU because the
 * build does not contract a*b+c into FMA (-std=c11 implies -ffp-contract=off). Elsewhere (clang,
 * non-ELF, non-x86) it is empty and the baseline version is the only one. */
#ifndef FASTNN_SIMD_H
#define FASTNN_SIMD_H
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__ELF__) && \
    !defined(FNN_NO_CLONES)
#define FNN_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define FNN_CLONES
#endif
#endif
