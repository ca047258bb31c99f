//! TAP backend (stub, being written).
