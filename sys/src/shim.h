/* Functions standing in for DPDK macros, which bindgen cannot bind. */
#ifndef SCISTREAM_SHIM_H
#define SCISTREAM_SHIM_H
#include <stdint.h>
struct rte_mbuf;

/* The calling thread's rte_errno. */
int scistream_rte_errno(void);
/* rte_pktmbuf_mtod(m, uint8_t *): start of the packet data. */
uint8_t *scistream_pktmbuf_mtod(struct rte_mbuf *m);
/* RTE_PKTMBUF_HEADROOM, as built. */
uint16_t scistream_pktmbuf_headroom(void);
#endif
