// OpenBLAS's cblas and the reference LAPACKE, seen by Swift as one module.
#include <cblas.h>
#include <lapacke.h>
