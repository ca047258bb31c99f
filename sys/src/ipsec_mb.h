/* Header bindgen reads for the intel-ipsec-mb bindings. */
#include <stdint.h>
#include <stdlib.h>
#include <intel-ipsec-mb.h>
