/* instantiate.h — include a type-generic file twice: once with real = float, FN(x) = x##_f32,
 * once with real = double, FN(x) = x##_f64. FNN_SELF names the file. A source file names
 * itself and keeps its template part under `#ifdef real`; a header (fastnn.h, internal.h) names
 * its prototype list (fastnn_api.h, internal_api.h) and undefines FNN_SELF afterwards. */
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
