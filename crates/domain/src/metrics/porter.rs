//! The Porter stemmer exactly as NLTK implements it in its default mode
//! (`nltk.stem.porter.PorterStemmer()`, `NLTK_EXTENSIONS`), which is what `rouge-score`
//! uses with `use_stemmer=True`. A line-by-line port of `nltk/stem/porter.py`: Porter's
//! 1980 algorithm with Martin Porter's later extensions and NLTK's (irregular forms,
//! `ies`/`ied` on 4-letter words, `y`→`i` only after a consonant, `alli`, `fulli`, `logi`).
//!
//! Works on lower-case ASCII words (the ROUGE tokenizer only produces `[a-z0-9]+`); other
//! input is lower-cased first, as NLTK does, and non-ASCII letters count as consonants.

/// Words NLTK maps directly (its `pool` of irregular forms).
const IRREGULAR: [(&str, &str); 16] = [
    ("sky", "sky"),
    ("skies", "sky"),
    ("dying", "die"),
    ("lying", "lie"),
    ("tying", "tie"),
    ("news", "news"),
    ("innings", "inning"),
    ("inning", "inning"),
    ("outings", "outing"),
    ("outing", "outing"),
    ("cannings", "canning"),
    ("canning", "canning"),
    ("howe", "howe"),
    ("proceed", "proceed"),
    ("exceed", "exceed"),
    ("succeed", "succeed"),
];

fn is_vowel(c: u8) -> bool {
    matches!(c, b'a' | b'e' | b'i' | b'o' | b'u')
}

/// `_is_consonant(word, i)`: a letter other than a vowel, and `y` only when preceded by a
/// vowel (or at the start).
fn is_consonant(w: &[u8], i: usize) -> bool {
    if is_vowel(w[i]) {
        return false;
    }
    if w[i] == b'y' {
        if i == 0 {
            return true;
        }
        return !is_consonant(w, i - 1);
    }
    true
}

fn consonant_flags(w: &[u8]) -> Vec<bool> {
    let mut flags: Vec<bool> = Vec::with_capacity(w.len());
    for (i, &c) in w.iter().enumerate() {
        let f = if is_vowel(c) {
            false
        } else if c == b'y' {
            i == 0 || !flags[i - 1]
        } else {
            true
        };
        flags.push(f);
    }
    flags
}

/// m in `[C](VC){m}[V]`: the number of vowel→consonant transitions.
fn measure(stem: &[u8]) -> usize {
    let f = consonant_flags(stem);
    f.windows(2).filter(|p| !p[0] && p[1]).count()
}

fn has_positive_measure(stem: &[u8]) -> bool {
    measure(stem) > 0
}

fn contains_vowel(stem: &[u8]) -> bool {
    consonant_flags(stem).iter().any(|c| !c)
}

/// `*d`: ends with a double consonant.
fn ends_double_consonant(w: &[u8]) -> bool {
    w.len() >= 2 && w[w.len() - 1] == w[w.len() - 2] && is_consonant(w, w.len() - 1)
}

/// `*o`: ends consonant-vowel-consonant, the last not w, x or y (NLTK: also a 2-letter
/// vowel-consonant word).
fn ends_cvc(w: &[u8]) -> bool {
    let n = w.len();
    (n >= 3 && is_consonant(w, n - 3) && !is_consonant(w, n - 2) && is_consonant(w, n - 1) && !matches!(w[n - 1], b'w' | b'x' | b'y'))
        || (n == 2 && !is_consonant(w, 0) && is_consonant(w, 1))
}

type Cond<'a> = &'a dyn Fn(&[u8]) -> bool;

/// A suffix rule; the suffix `"*d"` means "ends with a double consonant".
struct Rule<'a> {
    suffix: &'a [u8],
    replacement: Vec<u8>,
    condition: Option<Cond<'a>>,
}

fn rule<'a>(suffix: &'a str, replacement: &str, condition: Option<Cond<'a>>) -> Rule<'a> {
    Rule { suffix: suffix.as_bytes(), replacement: replacement.as_bytes().to_vec(), condition }
}

/// `_apply_rule_list`: the first rule whose suffix matches decides (applied if its
/// condition holds, otherwise the word is returned unchanged).
fn apply_rules(word: Vec<u8>, rules: &[Rule<'_>]) -> Vec<u8> {
    for r in rules {
        if r.suffix == b"*d" && ends_double_consonant(&word) {
            let stem = &word[..word.len() - 2];
            if r.condition.is_none_or(|c| c(stem)) {
                let mut out = stem.to_vec();
                out.extend_from_slice(&r.replacement);
                return out;
            }
            return word;
        }
        if word.ends_with(r.suffix) {
            let stem = &word[..word.len() - r.suffix.len()];
            if r.condition.is_none_or(|c| c(stem)) {
                let mut out = stem.to_vec();
                out.extend_from_slice(&r.replacement);
                return out;
            }
            return word;
        }
    }
    word
}

fn replace_suffix(word: &[u8], suffix: &str, replacement: &str) -> Vec<u8> {
    let mut out = word[..word.len() - suffix.len()].to_vec();
    out.extend_from_slice(replacement.as_bytes());
    out
}

fn step1a(word: Vec<u8>) -> Vec<u8> {
    if word.ends_with(b"ies") && word.len() == 4 {
        return replace_suffix(&word, "ies", "ie");
    }
    apply_rules(word, &[rule("sses", "ss", None), rule("ies", "i", None), rule("ss", "ss", None), rule("s", "", None)])
}

fn step1b(word: Vec<u8>) -> Vec<u8> {
    if word.ends_with(b"ied") {
        return if word.len() == 4 { replace_suffix(&word, "ied", "ie") } else { replace_suffix(&word, "ied", "i") };
    }
    if word.ends_with(b"eed") {
        let stem = &word[..word.len() - 3];
        return if measure(stem) > 0 { replace_suffix(&word, "eed", "ee") } else { word };
    }
    let mut intermediate: Option<Vec<u8>> = None;
    for suffix in ["ed", "ing"] {
        if word.ends_with(suffix.as_bytes()) {
            let stem = &word[..word.len() - suffix.len()];
            if contains_vowel(stem) {
                intermediate = Some(stem.to_vec());
                break;
            }
        }
    }
    let Some(stem) = intermediate else {
        return word;
    };
    let last = stem.last().copied();
    let not_lsz = move |_: &[u8]| !matches!(last, Some(b'l' | b's' | b'z'));
    let m1_cvc = |s: &[u8]| measure(s) == 1 && ends_cvc(s);
    let double = Rule { suffix: b"*d", replacement: last.map(|c| vec![c]).unwrap_or_default(), condition: Some(&not_lsz) };
    apply_rules(stem, &[rule("at", "ate", None), rule("bl", "ble", None), rule("iz", "ize", None), double, rule("", "e", Some(&m1_cvc))])
}

fn step1c(word: Vec<u8>) -> Vec<u8> {
    let cond = |s: &[u8]| s.len() > 1 && is_consonant(s, s.len() - 1);
    apply_rules(word, &[rule("y", "i", Some(&cond))])
}

fn step2(word: Vec<u8>) -> Vec<u8> {
    if word.ends_with(b"alli") && has_positive_measure(&word[..word.len() - 4]) {
        return step2(replace_suffix(&word, "alli", "al"));
    }
    let pm: Cond<'_> = &has_positive_measure;
    let w3 = if word.len() >= 3 { word[..word.len() - 3].to_vec() } else { Vec::new() };
    let logi = move |_: &[u8]| has_positive_measure(&w3);
    let rules = [
        rule("ational", "ate", Some(pm)),
        rule("tional", "tion", Some(pm)),
        rule("enci", "ence", Some(pm)),
        rule("anci", "ance", Some(pm)),
        rule("izer", "ize", Some(pm)),
        rule("bli", "ble", Some(pm)),
        rule("alli", "al", Some(pm)),
        rule("entli", "ent", Some(pm)),
        rule("eli", "e", Some(pm)),
        rule("ousli", "ous", Some(pm)),
        rule("ization", "ize", Some(pm)),
        rule("ation", "ate", Some(pm)),
        rule("ator", "ate", Some(pm)),
        rule("alism", "al", Some(pm)),
        rule("iveness", "ive", Some(pm)),
        rule("fulness", "ful", Some(pm)),
        rule("ousness", "ous", Some(pm)),
        rule("aliti", "al", Some(pm)),
        rule("iviti", "ive", Some(pm)),
        rule("biliti", "ble", Some(pm)),
        rule("fulli", "ful", Some(pm)),
        rule("logi", "log", Some(&logi)),
    ];
    apply_rules(word, &rules)
}

fn step3(word: Vec<u8>) -> Vec<u8> {
    let pm: Cond<'_> = &has_positive_measure;
    apply_rules(
        word,
        &[
            rule("icate", "ic", Some(pm)),
            rule("ative", "", Some(pm)),
            rule("alize", "al", Some(pm)),
            rule("iciti", "ic", Some(pm)),
            rule("ical", "ic", Some(pm)),
            rule("ful", "", Some(pm)),
            rule("ness", "", Some(pm)),
        ],
    )
}

fn step4(word: Vec<u8>) -> Vec<u8> {
    let gt1 = |s: &[u8]| measure(s) > 1;
    let m: Cond<'_> = &gt1;
    let ion = |s: &[u8]| measure(s) > 1 && matches!(s.last(), Some(b's' | b't'));
    apply_rules(
        word,
        &[
            rule("al", "", Some(m)),
            rule("ance", "", Some(m)),
            rule("ence", "", Some(m)),
            rule("er", "", Some(m)),
            rule("ic", "", Some(m)),
            rule("able", "", Some(m)),
            rule("ible", "", Some(m)),
            rule("ant", "", Some(m)),
            rule("ement", "", Some(m)),
            rule("ment", "", Some(m)),
            rule("ent", "", Some(m)),
            rule("ion", "", Some(&ion)),
            rule("ou", "", Some(m)),
            rule("ism", "", Some(m)),
            rule("ate", "", Some(m)),
            rule("iti", "", Some(m)),
            rule("ous", "", Some(m)),
            rule("ive", "", Some(m)),
            rule("ize", "", Some(m)),
        ],
    )
}

fn step5a(word: Vec<u8>) -> Vec<u8> {
    if word.ends_with(b"e") {
        let stem = &word[..word.len() - 1];
        let m = measure(stem);
        if m > 1 || (m == 1 && !ends_cvc(stem)) {
            return stem.to_vec();
        }
    }
    word
}

fn step5b(word: Vec<u8>) -> Vec<u8> {
    let w1 = if word.is_empty() { Vec::new() } else { word[..word.len() - 1].to_vec() };
    let cond = move |_: &[u8]| measure(&w1) > 1;
    apply_rules(word, &[rule("ll", "l", Some(&cond))])
}

/// Stems one word like `nltk.stem.porter.PorterStemmer().stem(word)`.
pub fn stem(word: &str) -> String {
    let lower = word.to_lowercase();
    if let Some((_, s)) = IRREGULAR.iter().find(|(w, _)| *w == lower) {
        return (*s).to_string();
    }
    // NLTK compares the original word's length in characters.
    if word.chars().count() <= 2 {
        return lower;
    }
    let mut w = lower.into_bytes();
    w = step1a(w);
    w = step1b(w);
    w = step1c(w);
    w = step2(w);
    w = step3(w);
    w = step4(w);
    w = step5a(w);
    w = step5b(w);
    // The steps only remove ASCII suffixes or append ASCII, so the bytes stay UTF-8
    // unless a suffix boundary split a multi-byte character, which ASCII suffixes cannot.
    String::from_utf8(w).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::stem;

    #[test]
    fn classic_examples() {
        for (w, s) in [
            ("caresses", "caress"),
            ("ponies", "poni"),
            ("ties", "tie"),
            ("cats", "cat"),
            ("feed", "feed"),
            ("agreed", "agre"),
            ("plastered", "plaster"),
            ("motoring", "motor"),
            ("sing", "sing"),
            ("conflated", "conflat"),
            ("hopping", "hop"),
            ("falling", "fall"),
            ("filing", "file"),
            ("happy", "happi"),
            ("enjoy", "enjoy"),
            ("relational", "relat"),
            ("running", "run"),
            ("runs", "run"),
            ("generalization", "gener"),
            ("skies", "sky"),
            ("dying", "die"),
            ("controlling", "control"),
        ] {
            assert_eq!(stem(w), s, "{w}");
        }
    }
}
