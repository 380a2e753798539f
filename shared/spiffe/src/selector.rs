//! Workload and node selectors such as `unix:uid:1000` or `k8s:ns:prod`.
//!
//! A selector is `kind:value`: the kind is everything before the first `:`
//! and must be non-empty `[a-z0-9_]`; the value is everything after it
//! (it may itself contain `:`) and must be non-empty. Neither may contain
//! whitespace or control characters.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A selector string violated a selector rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SelectorError {
    /// The selector was empty.
    #[error("invalid selector \"\": must not be empty (expected \"kind:value\")")]
    Empty,
    /// There was no `:` separating kind and value.
    #[error(
        "invalid selector {input:?}: missing ':' between kind and value (expected \"kind:value\")"
    )]
    MissingSeparator {
        /// The offending input.
        input: String,
    },
    /// The kind (before the first `:`) was empty.
    #[error("invalid selector {input:?}: kind (before the first ':') is empty")]
    EmptyKind {
        /// The offending input.
        input: String,
    },
    /// The value (after the first `:`) was empty.
    #[error("invalid selector {input:?}: value (after the first ':') is empty")]
    EmptyValue {
        /// The offending input.
        input: String,
    },
    /// The kind contained a character outside `[a-z0-9_]`.
    #[error(
        "invalid selector {input:?}: kind character {ch:?} at position {position} is not allowed (only lowercase a-z, 0-9, '_')"
    )]
    KindBadChar {
        /// The offending input.
        input: String,
        /// The offending character.
        ch: char,
        /// Byte offset within the selector.
        position: usize,
    },
    /// The selector contained whitespace or a control character.
    #[error(
        "invalid selector {input:?}: whitespace or control character {ch:?} at position {position} is not allowed"
    )]
    Whitespace {
        /// The offending input.
        input: String,
        /// The offending character.
        ch: char,
        /// Byte offset within the selector.
        position: usize,
    },
}

/// A validated `kind:value` selector.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Selector {
    kind: String,
    value: String,
}

impl Selector {
    /// Parses `kind:value`, splitting at the first `:`.
    pub fn parse(s: &str) -> Result<Selector, SelectorError> {
        if s.is_empty() {
            return Err(SelectorError::Empty);
        }
        let input = || s.to_string();
        for (position, ch) in s.char_indices() {
            if ch.is_whitespace() || ch.is_control() {
                return Err(SelectorError::Whitespace {
                    input: input(),
                    ch,
                    position,
                });
            }
        }
        let Some((kind, value)) = s.split_once(':') else {
            return Err(SelectorError::MissingSeparator { input: input() });
        };
        if kind.is_empty() {
            return Err(SelectorError::EmptyKind { input: input() });
        }
        for (position, ch) in kind.char_indices() {
            if !matches!(ch, 'a'..='z' | '0'..='9' | '_') {
                return Err(SelectorError::KindBadChar {
                    input: input(),
                    ch,
                    position,
                });
            }
        }
        if value.is_empty() {
            return Err(SelectorError::EmptyValue { input: input() });
        }
        Ok(Selector {
            kind: kind.to_string(),
            value: value.to_string(),
        })
    }

    /// Builds a selector from its two parts, with the same rules as [`Selector::parse`].
    pub fn new(kind: &str, value: &str) -> Result<Selector, SelectorError> {
        let s = format!("{kind}:{value}");
        let sel = Selector::parse(&s)?;
        if sel.kind != kind {
            // `kind` itself contained ':'.
            return Err(SelectorError::KindBadChar {
                input: s,
                ch: ':',
                position: sel.kind.len(),
            });
        }
        Ok(sel)
    }

    /// The kind, e.g. `unix`.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The value, e.g. `uid:1000`.
    pub fn value(&self) -> &str {
        &self.value
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.value)
    }
}

impl FromStr for Selector {
    type Err = SelectorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Selector::parse(s)
    }
}

impl Serialize for Selector {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Selector {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Selector::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kind_and_value() {
        let s = Selector::parse("unix:uid:1000").unwrap();
        assert_eq!(s.kind(), "unix");
        assert_eq!(s.value(), "uid:1000");
        assert_eq!(s.to_string(), "unix:uid:1000");
        let s = Selector::parse("k8s_psat:cluster:prod-1").unwrap();
        assert_eq!(s.kind(), "k8s_psat");
        assert_eq!(s.value(), "cluster:prod-1");
        let s: Selector = "docker:label:a=b".parse().unwrap();
        assert_eq!(s.value(), "label:a=b");
        assert_eq!(
            Selector::new("unix", "uid:0").unwrap(),
            Selector::parse("unix:uid:0").unwrap()
        );
    }

    #[test]
    fn rejects_bad_selectors() {
        assert_eq!(Selector::parse(""), Err(SelectorError::Empty));
        type Check = fn(&SelectorError) -> bool;
        let cases: &[(&str, Check)] = &[
            ("unix", |e| {
                matches!(e, SelectorError::MissingSeparator { .. })
            }),
            (":uid:1", |e| matches!(e, SelectorError::EmptyKind { .. })),
            ("unix:", |e| matches!(e, SelectorError::EmptyValue { .. })),
            ("Unix:uid:1", |e| {
                matches!(
                    e,
                    SelectorError::KindBadChar {
                        ch: 'U',
                        position: 0,
                        ..
                    }
                )
            }),
            ("un-ix:uid:1", |e| {
                matches!(
                    e,
                    SelectorError::KindBadChar {
                        ch: '-',
                        position: 2,
                        ..
                    }
                )
            }),
            ("unix:uid: 1", |e| {
                matches!(
                    e,
                    SelectorError::Whitespace {
                        ch: ' ',
                        position: 9,
                        ..
                    }
                )
            }),
            ("unix:uid:1\n", |e| {
                matches!(e, SelectorError::Whitespace { ch: '\n', .. })
            }),
            ("unix:uid:\u{7}1", |e| {
                matches!(e, SelectorError::Whitespace { ch: '\u{7}', .. })
            }),
            (" unix:uid:1", |e| {
                matches!(e, SelectorError::Whitespace { position: 0, .. })
            }),
        ];
        for (input, check) in cases {
            let e = Selector::parse(input).unwrap_err();
            assert!(check(&e), "{input:?} gave {e:?}");
            assert!(
                e.to_string().contains(&format!("{input:?}")),
                "message {e} does not quote input"
            );
        }
        assert!(matches!(
            Selector::new("a:b", "c"),
            Err(SelectorError::KindBadChar { ch: ':', .. })
        ));
    }

    #[test]
    fn ordering_and_serde() {
        let a = Selector::parse("a:z").unwrap();
        let b = Selector::parse("b:a").unwrap();
        assert!(a < b);
        let json = serde_json::to_string(&vec![a.clone(), b.clone()]).unwrap();
        assert_eq!(json, r#"["a:z","b:a"]"#);
        let back: Vec<Selector> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, vec![a, b]);
        assert!(serde_json::from_str::<Selector>("\"nokind\"").is_err());
    }
}
