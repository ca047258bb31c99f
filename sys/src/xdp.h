/* Headers bindgen reads for the AF_XDP bindings (libxdp's xsk API). */
#include <linux/if_link.h>
#include <linux/if_xdp.h>
#include <xdp/libxdp.h>
#include <xdp/xsk.h>
