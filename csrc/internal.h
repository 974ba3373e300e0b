/* internal.h — declarations shared by the C files of fastnn, not exported to Python. */
#ifndef FASTNN_INTERNAL_H
#define FASTNN_INTERNAL_H
#include "fastnn.h"
#include "team.h"

#define real float
#define FN(name) name##_f32
#include "internal_api.h"
#undef real
#undef FN
#define real double
#define FN(name) name##_f64
#include "internal_api.h"
#undef real
#undef FN

#endif
