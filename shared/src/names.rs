//! Human-chosen text that both tiers validate with the same constructors:
//! a tenant's display name ([`TenantName`]) and a subject ([`Subject`], the
//! JWT `sub` of a person or system).
//!
//! The rules, the same wherever a value enters either tier:
//! - lengths are counted in characters (Unicode scalar values) after
//!   normalisation, never in bytes: 200 `é` are 200 characters;
//! - text is stored NFC-normalised, so `e` + U+0301 and `é` are one value;
//! - control characters (C0 and C1, so NUL and the ANSI escape ESC), line
//!   and paragraph separators and the bidi overrides and isolates
//!   (U+202A–U+202E, U+2066–U+2069) are refused: they make text display as
//!   something other than what it is;
//! - text that is only invisible characters (zero-width, format characters)
//!   and whitespace is refused;
//! - a subject holds no whitespace and no invisible character at all, so
//!   `bob-a` and `bob-a` + U+200B cannot both exist, and subjects compare
//!   case-insensitively through [`subject_key`].

use std::fmt;

use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

use crate::ids::Invalid;

/// Characters that change how surrounding text is displayed (bidi
/// embeddings, overrides and isolates).
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Characters that display as nothing: zero-width spaces and joiners,
/// directional marks, format characters, variation selectors, tags and the
/// Hangul fillers.
pub fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// Characters no single-line text may hold: controls (C0, DEL, C1), line
/// and paragraph separators and bidi controls.
pub fn is_forbidden(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') || is_bidi_control(c)
}

/// A person-readable description of `c` for error messages (never the raw
/// character: it may be invisible or rewrite the terminal).
fn describe(c: char) -> String {
    match c {
        '\0' => "NUL (U+0000)".into(),
        '\u{1B}' => "ESC (U+001B)".into(),
        c if is_bidi_control(c) => format!("the bidi control U+{:04X}", c as u32),
        c if c.is_control() => format!("the control character U+{:04X}", c as u32),
        c if c.is_whitespace() => format!("the whitespace U+{:04X}", c as u32),
        c => format!("the invisible character U+{:04X}", c as u32),
    }
}

/// Normalises `s` to NFC and checks it as single-line display text of 1 to
/// `max` characters: no forbidden character, not only invisible characters
/// and whitespace. Leading and trailing whitespace is trimmed first.
/// `what` names the value in the error ("name", "title", …).
pub fn display_text(what: &str, s: &str, max: usize) -> Result<String, Invalid> {
    let s: String = s.trim().nfc().collect();
    let n = s.chars().count();
    if n == 0 || n > max {
        return Err(Invalid(format!(
            "{what} must be 1 to {max} characters, got {n}"
        )));
    }
    if let Some(c) = s.chars().find(|&c| is_forbidden(c)) {
        return Err(Invalid(format!("{what} must not contain {}", describe(c))));
    }
    if s.chars().all(|c| c.is_whitespace() || is_invisible(c)) {
        return Err(Invalid(format!(
            "{what} must contain a visible character, not only invisible characters and whitespace"
        )));
    }
    Ok(s)
}

/// A tenant's display name: 1 to 200 characters of single-line text, NFC.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct TenantName(String);

impl TenantName {
    /// The longest name accepted, in characters after NFC normalisation.
    pub const MAX_CHARS: usize = 200;

    /// Trims, normalises to NFC and checks the name; the [`Invalid`] names the offending character or the length.
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        display_text("name", s, Self::MAX_CHARS).map(Self)
    }

    /// The normalised name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The normalised name, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// The key subjects compare by: NFC, lowercased (Unicode), NFC again.
/// Defined for any string, valid subject or not, so stored and token
/// subjects that predate [`Subject`] still compare the same way.
pub fn subject_key(s: &str) -> String {
    let nfc: String = s.nfc().collect();
    nfc.to_lowercase().nfc().collect()
}

/// Whether two subjects name the same person (case-insensitively).
pub fn same_subject(a: &str, b: &str) -> bool {
    a == b || subject_key(a) == subject_key(b)
}

/// A subject: the JWT `sub` of a person or system, 1 to 200 characters,
/// NFC, with no whitespace, control, bidi or invisible character. The case
/// it was given in is kept for display; [`Subject::key`] is what it is
/// compared and looked up by.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct Subject(String);

impl Subject {
    /// The longest subject accepted, in characters after NFC normalisation.
    pub const MAX_CHARS: usize = 200;

    /// Normalises to NFC and checks the subject; the [`Invalid`] names the offending character or the length.
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        let v: String = s.nfc().collect();
        let n = v.chars().count();
        if n == 0 || n > Self::MAX_CHARS {
            return Err(Invalid(format!(
                "subject must be 1 to {} characters, got {n}",
                Self::MAX_CHARS
            )));
        }
        if let Some(c) = v
            .chars()
            .find(|&c| is_forbidden(c) || is_invisible(c) || c.is_whitespace())
        {
            return Err(Invalid(format!("subject must not contain {}", describe(c))));
        }
        Ok(Self(v))
    }

    /// The normalised subject, in the case it was given in.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The case-insensitive key: equal for `Bob` and `bob`.
    pub fn key(&self) -> String {
        subject_key(&self.0)
    }

    /// The normalised subject, owned, in the case it was given in.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// Subjects are equal when their keys are.
impl PartialEq for Subject {
    fn eq(&self, other: &Self) -> bool {
        same_subject(&self.0, &other.0)
    }
}

impl Eq for Subject {}

impl std::hash::Hash for Subject {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key().hash(state)
    }
}

macro_rules! text_impls {
    ($name:ident) => {
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = Invalid;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

text_impls!(TenantName);
text_impls!(Subject);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const REFUSED_IN_TEXT: [char; 12] = [
        '\0', '\u{1B}', '\u{7F}', '\u{85}', '\n', '\u{2028}', '\u{202A}', '\u{202B}', '\u{202D}',
        '\u{202E}', '\u{2066}', '\u{2069}',
    ];
    const ZERO_WIDTH: [char; 6] = [
        '\u{200B}', '\u{200C}', '\u{200D}', '\u{2060}', '\u{FEFF}', '\u{00AD}',
    ];

    #[test]
    fn names_count_characters_not_bytes() {
        let n = "é".repeat(150);
        assert_eq!(TenantName::parse(&n).unwrap().as_str(), n);
        assert!(TenantName::parse(&"é".repeat(200)).is_ok());
        assert!(TenantName::parse(&"é".repeat(201)).is_err());
        assert!(TenantName::parse(&"😀".repeat(200)).is_ok());
    }

    #[test]
    fn names_are_nfc_and_trimmed() {
        let decomposed = "Cafe\u{301} ".repeat(30);
        let n = TenantName::parse(&decomposed).unwrap();
        assert_eq!(n.as_str(), "Café ".repeat(30).trim());
        // 200 decomposed characters are 100 composed ones.
        assert!(TenantName::parse(&"e\u{301}".repeat(200)).is_ok());
        assert_eq!(TenantName::parse("  Acme  ").unwrap().as_str(), "Acme");
    }

    #[test]
    fn names_refuse_controls_bidi_and_invisible_only_text() {
        for c in REFUSED_IN_TEXT {
            let e = TenantName::parse(&format!("Acme{c}Corp")).unwrap_err();
            assert!(e.0.contains("U+"), "{e}");
        }
        let esc = TenantName::parse("Acme\u{1b}[31m").unwrap_err();
        assert!(esc.0.contains("ESC"), "{esc}");
        for only in [
            "",
            "   ",
            "\u{200B}",
            "\u{200B}\u{200D} \u{FEFF}",
            "\u{3164}",
        ] {
            assert!(TenantName::parse(only).is_err(), "{only:?}");
        }
        // Joiners inside visible text are text (emoji sequences, scripts).
        assert!(TenantName::parse("👩\u{200D}💻 team").is_ok());
        assert!(TenantName::parse("می\u{200C}خواهم").is_ok());
    }

    #[test]
    fn subjects_refuse_invisible_whitespace_and_controls() {
        assert_eq!(Subject::parse("bob-a").unwrap().as_str(), "bob-a");
        for c in REFUSED_IN_TEXT.iter().chain(ZERO_WIDTH.iter()) {
            assert!(Subject::parse(&format!("bob-a{c}")).is_err(), "{c:?}");
        }
        assert!(Subject::parse("bob a").is_err());
        assert!(Subject::parse("").is_err());
        assert!(Subject::parse(&"ü".repeat(200)).is_ok());
        assert!(Subject::parse(&"ü".repeat(201)).is_err());
        assert!(Subject::parse("auth0|5f3a").is_ok());
        assert!(Subject::parse("system:serviceaccount:ns:ci").is_ok());
    }

    #[test]
    fn subjects_compare_case_insensitively() {
        let a = Subject::parse("SRE-SELF").unwrap();
        let b = Subject::parse("sre-self").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.as_str(), "SRE-SELF");
        assert_eq!(a.key(), "sre-self");
        assert!(same_subject("Ünal", "ünal"));
        assert!(same_subject("Jose\u{301}", "JOSÉ"));
        assert!(!same_subject("bob-a", "bob-a\u{200B}"));
        assert_eq!(subject_key("ΣΊΣΥΦΟΣ"), "ΣΊΣΥΦΟΣ".to_lowercase());
    }

    #[test]
    fn deserialize_validates() {
        assert!(serde_json::from_str::<TenantName>("\"a\\u0000b\"").is_err());
        assert!(serde_json::from_str::<Subject>("\"\\u202e\"").is_err());
        assert_eq!(
            serde_json::from_str::<Subject>("\"Bob\"").unwrap().as_str(),
            "Bob"
        );
    }

    /// Visible text: letters, marks, numbers, punctuation, symbols and spaces.
    fn visible() -> impl Strategy<Value = String> {
        "[\\p{L}\\p{M}\\p{N}\\p{P}\\p{S} ]{0,40}"
    }

    proptest! {
        #[test]
        fn accepted_names_round_trip(s in "\\PC{0,260}") {
            if let Ok(n) = TenantName::parse(&s) {
                let v = n.as_str();
                // Accepted once, accepted again unchanged: what one tier
                // accepts and stores, the other accepts as is.
                prop_assert_eq!(TenantName::parse(v).unwrap().into_string(), v);
                let back: TenantName = serde_json::from_str(&serde_json::to_string(&n).unwrap()).unwrap();
                prop_assert_eq!(back.as_str(), v);
                prop_assert!((1..=TenantName::MAX_CHARS).contains(&v.chars().count()));
                prop_assert_eq!(v.nfc().collect::<String>(), v);
                prop_assert!(!v.chars().any(is_forbidden));
                prop_assert!(v.chars().any(|c| !c.is_whitespace() && !is_invisible(c)));
            }
        }

        #[test]
        fn name_length_is_counted_in_characters(c in "[\\p{L}\\p{N}]", n in 1usize..=260) {
            prop_assume!(!c.chars().any(is_invisible));
            let s = c.repeat(n);
            let chars = s.nfc().count();
            prop_assert_eq!(TenantName::parse(&s).is_ok(), chars <= TenantName::MAX_CHARS);
            prop_assert_eq!(Subject::parse(&s).is_ok(), chars <= Subject::MAX_CHARS);
        }

        #[test]
        fn names_are_normalised(s in visible()) {
            let nfd: String = s.nfd().collect();
            let nfc: String = s.nfc().collect();
            match (TenantName::parse(&nfd), TenantName::parse(&nfc)) {
                (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
                (a, b) => prop_assert_eq!(a.is_ok(), b.is_ok()),
            }
        }

        #[test]
        fn a_forbidden_character_anywhere_is_refused(
            pre in visible(),
            post in visible(),
            i in 0usize..REFUSED_IN_TEXT.len(),
        ) {
            let s = format!("x{pre}{}{post}x", REFUSED_IN_TEXT[i]);
            prop_assert!(TenantName::parse(&s).is_err());
            prop_assert!(Subject::parse(&s).is_err());
        }

        #[test]
        fn invisible_only_text_is_refused(
            s in proptest::collection::vec(prop_oneof![
                Just(' '), Just('\u{200B}'), Just('\u{200C}'), Just('\u{200D}'),
                Just('\u{2060}'), Just('\u{FEFF}'), Just('\u{3000}'), Just('\u{00A0}'),
            ], 0..30)
        ) {
            let s: String = s.into_iter().collect();
            prop_assert!(TenantName::parse(&s).is_err());
            prop_assert!(Subject::parse(&s).is_err());
        }

        #[test]
        fn accepted_subjects_round_trip(s in "\\PC{0,210}") {
            if let Ok(sub) = Subject::parse(&s) {
                let v = sub.as_str();
                prop_assert_eq!(Subject::parse(v).unwrap().into_string(), v);
                prop_assert!((1..=Subject::MAX_CHARS).contains(&v.chars().count()));
                prop_assert_eq!(v.nfc().collect::<String>(), v);
                prop_assert!(!v.chars().any(|c| is_forbidden(c) || is_invisible(c) || c.is_whitespace()));
            }
        }

        #[test]
        fn subjects_differing_in_case_are_one(s in "[a-zA-Z0-9äöüÄÖÜéÉ._|@-]{1,50}") {
            let lower = Subject::parse(&s.to_lowercase()).unwrap();
            let upper = Subject::parse(&s.to_uppercase()).unwrap();
            prop_assert_eq!(lower.key(), upper.key());
            prop_assert!(same_subject(lower.as_str(), upper.as_str()));
        }

        #[test]
        fn a_zero_width_character_makes_another_subject_refused(
            s in "[a-z0-9-]{1,40}",
            i in 0usize..ZERO_WIDTH.len(),
            at in 0usize..=40,
        ) {
            let mut z = s.clone();
            z.insert(at.min(s.len()), ZERO_WIDTH[i]);
            prop_assert!(Subject::parse(&s).is_ok());
            prop_assert!(Subject::parse(&z).is_err());
        }
    }
}
