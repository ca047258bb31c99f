//! Shared support code for the end-to-end integration tests.
//!
//! Each integration test crate that needs it declares `mod support;`. Not every test uses
//! every helper, hence the crate-wide `dead_code` allowance for this module tree.
#![allow(dead_code)]

pub mod capture;
pub mod control;
pub mod gateway;
pub mod netns;
