//! Run configs as sent to `POST /api/v1/runs` (first two bytes: the budget).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rankfit_domain::fuzzing::run_config(data));
