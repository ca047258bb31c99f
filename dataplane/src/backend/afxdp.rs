//! Native AF_XDP backend (stub, being written).
