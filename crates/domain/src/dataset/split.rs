//! Deterministic train/validation/test assignment for rows the file does not place.
//!
//! Each row's split comes from a 64-bit FNV-1a hash of its texts (`text_a`, a 0x1F
//! separator, `text_b`), mixed with the SplitMix64 finalizer so every bit counts: bucket
//! `h % 10` 0..=7 is train, 8 validation, 9 test (80/10/10). Identical texts always land in
//! the same split (no leakage of duplicates into evaluation), on every machine and every
//! run: nothing depends on process randomness or hash seeds.
//!
//! Two fix-ups keep a hashed split usable: with 10 or more rows in the dataset and no
//! validation row, the hashed training rows with the smallest hash (one text, with its
//! duplicates) move to validation; and when no row is in train, the hashed rows with the
//! smallest hash move to train.

use super::Split;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// 64-bit FNV-1a.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    fnv1a64_extend(FNV_OFFSET, bytes)
}

fn fnv1a64_extend(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// SplitMix64's finalizer.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The stable hash of an example's texts.
pub fn example_hash(text_a: &str, text_b: Option<&str>) -> u64 {
    let mut h = fnv1a64_extend(FNV_OFFSET, text_a.as_bytes());
    if let Some(b) = text_b {
        h = fnv1a64_extend(h, &[0x1f]);
        h = fnv1a64_extend(h, b.as_bytes());
    }
    mix(h)
}

/// The 80/10/10 split for a hash.
pub fn split_for_hash(h: u64) -> Split {
    match h % 10 {
        0..=7 => Split::Train,
        8 => Split::Validation,
        _ => Split::Test,
    }
}

/// The split an example gets when neither the file nor the options place it.
pub fn hashed_split(text_a: &str, text_b: Option<&str>) -> Split {
    split_for_hash(example_hash(text_a, text_b))
}

/// Assigns splits. `fixed[i]` is the split the file or the options gave row `i` (None:
/// hash it); `hashes[i]` is row `i`'s [`example_hash`]. Applies the fix-ups described in
/// the module docs to hashed rows only.
pub(crate) fn assign(fixed: &[Option<Split>], hashes: &[u64]) -> Vec<Split> {
    let mut out: Vec<Split> = fixed.iter().zip(hashes).map(|(f, h)| f.unwrap_or_else(|| split_for_hash(*h))).collect();
    let count = |out: &[Split], s: Split| out.iter().filter(|x| **x == s).count();
    let smallest_hashed = |out: &[Split], from: Option<Split>| -> Option<u64> {
        (0..out.len()).filter(|&i| fixed[i].is_none() && from.is_none_or(|f| out[i] == f)).map(|i| hashes[i]).min()
    };
    if count(&out, Split::Train) == 0 {
        if let Some(h) = smallest_hashed(&out, None) {
            for i in 0..out.len() {
                if fixed[i].is_none() && hashes[i] == h {
                    out[i] = Split::Train;
                }
            }
        }
    }
    if out.len() >= 10 && count(&out, Split::Validation) == 0 {
        if let Some(h) = smallest_hashed(&out, Some(Split::Train)) {
            let moving = (0..out.len()).filter(|&i| fixed[i].is_none() && hashes[i] == h).count();
            // Never empty train to fill validation.
            if count(&out, Split::Train) > moving {
                for i in 0..out.len() {
                    if fixed[i].is_none() && hashes[i] == h {
                        out[i] = Split::Validation;
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_known_values() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn hashed_split_is_stable_and_roughly_80_10_10() {
        assert_eq!(hashed_split("hello", None), hashed_split("hello", None));
        let mut counts = [0usize; 3];
        for i in 0..10_000 {
            let s = hashed_split(&format!("example number {i}"), None);
            counts[s as usize] += 1;
        }
        assert!((7_700..8_300).contains(&counts[0]), "{counts:?}");
        assert!((800..1_200).contains(&counts[1]), "{counts:?}");
        assert!((800..1_200).contains(&counts[2]), "{counts:?}");
    }

    #[test]
    fn pair_separator_matters() {
        assert_ne!(example_hash("ab", Some("c")), example_hash("a", Some("bc")));
        assert_ne!(example_hash("ab", None), example_hash("ab", Some("")));
    }

    #[test]
    fn fixups_fill_validation_and_train() {
        // Ten rows that all hash to train: one moves to validation.
        let hashes: Vec<u64> = (0..10u64).map(|i| i * 10 + 1).collect();
        let out = assign(&[None; 10], &hashes);
        assert_eq!(out.iter().filter(|s| **s == Split::Validation).count(), 1);
        assert_eq!(out[0], Split::Validation);
        // Fixed rows are never moved.
        let out = assign(&[Some(Split::Train); 10], &hashes);
        assert!(out.iter().all(|s| *s == Split::Train));
        // Two rows that hash to test: the smaller moves to train.
        let out = assign(&[None, None], &[19, 9]);
        assert_eq!(out, vec![Split::Test, Split::Train]);
    }
}
