//! A value in a runbook file that is either written out or names a variable: `"x509"`,
//! `"${kind}"`, or text with variables in it (`"server ${server}"`). Variables are the
//! runbook's inputs, what the inputs imply (`<input>_spiffe_id`, ...), and what earlier steps
//! saved. Resolution is text substitution, then parsing into the value's type.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

/// Why a value could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    #[error("variable ${{{0}}} has no value yet")]
    Unset(String),
    #[error("unterminated ${{ in {0:?}")]
    Unterminated(String),
    #[error("{value:?}: {why}")]
    Invalid { value: String, why: String },
}

/// Text with `${name}` variables.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        vars_in(&s).map_err(serde::de::Error::custom)?;
        Ok(Text(s))
    }
}

/// The variable names `s` refers to, in order.
pub fn vars_in(s: &str) -> Result<Vec<String>, ParamError> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        let after = &rest[i + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| ParamError::Unterminated(s.to_string()))?;
        out.push(after[..end].to_string());
        rest = &after[end + 1..];
    }
    Ok(out)
}

/// `s` with every variable replaced; `missing` decides what an unset one becomes (an error,
/// or a placeholder for a plan).
pub fn substitute(
    s: &str,
    vars: &BTreeMap<String, String>,
    missing: &dyn Fn(&str) -> Result<String, ParamError>,
) -> Result<String, ParamError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| ParamError::Unterminated(s.to_string()))?;
        let name = &after[..end];
        match vars.get(name) {
            Some(v) => out.push_str(v),
            None => out.push_str(&missing(name)?),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

impl Text {
    /// The text with every variable's value; an unset variable is an error.
    pub fn resolve(&self, vars: &BTreeMap<String, String>) -> Result<String, ParamError> {
        substitute(&self.0, vars, &|n| Err(ParamError::Unset(n.to_string())))
    }

    /// The text for a plan: an unset variable shows as `<name>`.
    pub fn render(&self, vars: &BTreeMap<String, String>) -> String {
        substitute(&self.0, vars, &|n| Ok(format!("<{n}>"))).unwrap_or_else(|_| self.0.clone())
    }

    /// The variables it refers to (checked to be well-formed when it was read).
    pub fn vars(&self) -> Vec<String> {
        vars_in(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A typed value, written out or from variables; a written-out value is parsed when the file
/// is read, so a typo is a load error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param<T> {
    pub text: Text,
    ty: PhantomData<T>,
}

impl<T> Param<T> {
    /// The variables it refers to.
    pub fn vars(&self) -> Vec<String> {
        self.text.vars()
    }
}

impl<T: FromStr> Param<T>
where
    T::Err: fmt::Display,
{
    /// A value written out.
    pub fn lit(s: &str) -> Self {
        Param {
            text: Text(s.to_string()),
            ty: PhantomData,
        }
    }

    /// Its value with `vars`.
    pub fn resolve(&self, vars: &BTreeMap<String, String>) -> Result<T, ParamError> {
        let s = self.text.resolve(vars)?;
        s.parse().map_err(|e: T::Err| ParamError::Invalid {
            value: s.clone(),
            why: e.to_string(),
        })
    }
}

impl<'de, T: FromStr> Deserialize<'de> for Param<T>
where
    T::Err: fmt::Display,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Text::deserialize(d)?;
        if text.vars().is_empty() {
            text.0
                .parse::<T>()
                .map_err(|e| serde::de::Error::custom(format!("{:?}: {e}", text.0)))?;
        }
        Ok(Param {
            text,
            ty: PhantomData,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn substitution_and_placeholders() {
        let t = Text("rotate ${server} onto ${new}".into());
        assert_eq!(t.vars(), vec!["server", "new"]);
        let v = vars(&[("server", "gcp")]);
        assert_eq!(t.render(&v), "rotate gcp onto <new>");
        assert_eq!(t.resolve(&v), Err(ParamError::Unset("new".into())));
        assert!(vars_in("a ${b").is_err());
    }

    #[test]
    fn typed_params_parse_after_substitution() {
        let p: Param<u64> = Param {
            text: Text("${n}".into()),
            ty: PhantomData,
        };
        assert_eq!(p.resolve(&vars(&[("n", "7")])), Ok(7));
        assert!(matches!(
            p.resolve(&vars(&[("n", "x")])),
            Err(ParamError::Invalid { .. })
        ));
    }
}
