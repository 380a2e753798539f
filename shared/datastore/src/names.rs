//! Closed vocabularies stored as text (CA kinds and statuses): each value has
//! one stable name, written to the database and read back unchanged, so
//! renaming a variant never changes what is stored.

/// A type whose values are stored as their stable names.
pub(crate) trait StoredName: Sized + Copy + 'static {
    const ALL: &'static [Self];

    /// The stored name of `self`.
    fn stored_name(self) -> &'static str;

    /// The value stored as `name`, if this version knows it.
    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.stored_name() == name)
    }
}

/// A name that is not in a vocabulary (returned by the vocabularies' `FromStr`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {vocabulary} \"{name}\"")]
pub struct UnknownName {
    /// Which vocabulary, e.g. `CA status`.
    pub vocabulary: &'static str,
    /// The name that was given.
    pub name: String,
}

/// Declares a vocabulary enum with its stored names, `as_str`, `Display` and
/// `FromStr`.
macro_rules! stored_names {
    (
        $(#[$meta:meta])*
        pub enum $ty:ident ($vocabulary:literal) {
            $( $(#[$vmeta:meta])* $variant:ident = $name:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $ty {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $ty {
            /// The stable name, as stored in the database and shown to operators.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $ty::$variant => $name, )+
                }
            }
        }

        impl $crate::names::StoredName for $ty {
            const ALL: &'static [Self] = &[$( $ty::$variant, )+];

            fn stored_name(self) -> &'static str {
                self.as_str()
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $ty {
            type Err = $crate::names::UnknownName;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                <Self as $crate::names::StoredName>::from_name(s).ok_or_else(|| {
                    $crate::names::UnknownName {
                        vocabulary: $vocabulary,
                        name: s.to_owned(),
                    }
                })
            }
        }
    };
}

pub(crate) use stored_names;
