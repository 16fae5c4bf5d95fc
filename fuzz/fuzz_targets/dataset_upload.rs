//! Uploads of every format and task family (first byte selects them).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rankfit_domain::fuzzing::dataset_upload(data));
