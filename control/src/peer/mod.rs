pub mod keys;
pub mod tls;
pub mod wire;
