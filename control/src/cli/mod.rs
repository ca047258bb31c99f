//! The command lines of `s2cs` and `s2uc` (clap), in the library so that
//! `xtask` renders them into man pages and shell completions.

pub mod s2cs;
pub mod s2uc;
