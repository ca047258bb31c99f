/* Macro shim: each function is the macro it is named after. */
#include <rte_errno.h>
#include <rte_mbuf.h>
#include "shim.h"

int scistream_rte_errno(void) { return rte_errno; }

uint8_t *scistream_pktmbuf_mtod(struct rte_mbuf *m) { return rte_pktmbuf_mtod(m, uint8_t *); }

uint16_t scistream_pktmbuf_headroom(void) { return RTE_PKTMBUF_HEADROOM; }
