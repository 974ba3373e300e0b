/* instantiate.h — compile a type-generic source file twice.
 * A file that defines FNN_SELF "<its name>" and includes this header when `real` is not yet
 * defined gets its template part (the part under `#ifdef real`) compiled once with
 * real = float, FN(x) = x##_f32 and once with real = double, FN(x) = x##_f64. */
#define real float
#define FN(name) name##_f32
#define REAL_IS_FLOAT 1
#include FNN_SELF
#undef real
#undef FN
#undef REAL_IS_FLOAT
#define real double
#define FN(name) name##_f64
#define REAL_IS_FLOAT 0
#include FNN_SELF
#undef real
#undef FN
#undef REAL_IS_FLOAT
