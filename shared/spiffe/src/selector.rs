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
    /// A `unix` selector names something the agent never produces.
    #[error(
        "invalid selector {input:?}: unknown unix selector {key:?} (use uid, gid, user, group, path or sha256)"
    )]
    UnknownUnixKey {
        /// The offending input.
        input: String,
        /// What came after `unix:`, up to the next `:`.
        key: String,
    },
    /// A `unix` selector's value can never match what the agent derives.
    #[error("invalid selector {input:?}: {rule}")]
    UnixValue {
        /// The offending input.
        input: String,
        /// The rule the value breaks.
        rule: UnixRule,
    },
}

/// The form of a `unix:<key>:<value>` value, as the agent's attestor writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UnixRule {
    /// `uid` and `gid` are decimal numbers from 0 to 4294967295.
    #[error("a uid or gid is a number from 0 to 4294967295")]
    NotAnId,
    /// `user` and `group` are non-empty names.
    #[error("a user or group name must not be empty")]
    EmptyName,
    /// `path` is the absolute path of the executable.
    #[error("path must be an absolute path")]
    RelativePath,
    /// `sha256` is 64 lowercase hex digits.
    #[error("sha256 must be 64 lowercase hex digits")]
    NotSha256,
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

    /// Checks the value of the kinds trustdeck's agent produces (`unix`), so that an entry
    /// that could never match is refused; selectors of other kinds pass unchanged.
    pub fn check_known(&self) -> Result<(), SelectorError> {
        if self.kind != "unix" {
            return Ok(());
        }
        let input = || self.to_string();
        let (key, value) = self.value.split_once(':').unwrap_or((&self.value, ""));
        let rule = match key {
            "uid" | "gid" => value.parse::<u32>().is_err().then_some(UnixRule::NotAnId),
            "user" | "group" => value.is_empty().then_some(UnixRule::EmptyName),
            "path" => (!value.starts_with('/')).then_some(UnixRule::RelativePath),
            "sha256" => (value.len() != 64
                || !value
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then_some(UnixRule::NotSha256),
            _ => {
                return Err(SelectorError::UnknownUnixKey {
                    input: input(),
                    key: key.to_string(),
                });
            }
        };
        match rule {
            None => Ok(()),
            Some(rule) => Err(SelectorError::UnixValue {
                input: input(),
                rule,
            }),
        }
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

    /// Issue 12, defect 9: `unix:uid:notanumber` was accepted for an entry no workload can
    /// ever match.
    #[test]
    fn unix_selectors_the_agent_never_produces_are_refused() {
        for good in [
            "unix:uid:0",
            "unix:gid:4294967295",
            "unix:user:www-data",
            "unix:group:staff",
            "unix:path:/usr/bin/x",
            &format!("unix:sha256:{}", "ab".repeat(32)),
            "k8s:ns:anything",
        ] {
            assert_eq!(
                Selector::parse(good).unwrap().check_known(),
                Ok(()),
                "{good}"
            );
        }
        let rule = |s: &str| match Selector::parse(s).unwrap().check_known() {
            Err(SelectorError::UnixValue { rule, .. }) => Some(rule),
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(rule("unix:uid:notanumber"), Some(UnixRule::NotAnId));
        assert_eq!(rule("unix:gid:-1"), Some(UnixRule::NotAnId));
        assert_eq!(rule("unix:uid:4294967296"), Some(UnixRule::NotAnId));
        assert_eq!(rule("unix:user:"), Some(UnixRule::EmptyName));
        assert_eq!(rule("unix:path:bin/x"), Some(UnixRule::RelativePath));
        assert_eq!(rule("unix:sha256:ABCD"), Some(UnixRule::NotSha256));
        let e = Selector::parse("unix:pid:12").unwrap().check_known();
        assert!(
            matches!(&e, Err(SelectorError::UnknownUnixKey { key, .. }) if key == "pid"),
            "{e:?}"
        );
        let e = Selector::parse("unix:uid:x")
            .unwrap()
            .check_known()
            .unwrap_err();
        assert!(e.to_string().contains("\"unix:uid:x\""), "{e}");
        assert!(e.to_string().contains("number"), "{e}");
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
