//! The variants of a measured instance, and why a record has no explicit variant.
//!
//! calibration.json holds both as strings (`best_variant: "runtime_extended"`, `explicit_unavailable:
//! "failed: ..."`); inside the code they are typed, and serde writes and reads the same strings as ever.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One way of running a pattern instance. Serialised as `unfused`, `runtime_extended`, `runtime_all`,
/// `explicit` (the strings of calibration.json's `best_variant` and a validation report's `variant`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Variant {
    /// Not fused: ORT's Disable level. As a record's `best_variant`: no fused variant is faster beyond the
    /// noise band (and the default for files without the field).
    #[default]
    Unfused,
    /// ORT's own optimiser at the extended level: the headline (`speedup_factor`, `extended`).
    RuntimeExtended,
    /// ORT's own optimiser at the full level (`all`).
    RuntimeAll,
    /// fuseval's explicit rewrite into ORT's fused kernel, run with optimisations disabled (`explicit`).
    Explicit,
}

impl Variant {
    /// The fused variants, in the order a record lists them.
    pub const FUSED: [Variant; 3] = [Variant::RuntimeExtended, Variant::RuntimeAll, Variant::Explicit];

    /// Every variant, in the order the summary counts them as best.
    pub const ALL: [Variant; 4] = [Variant::Explicit, Variant::RuntimeExtended, Variant::RuntimeAll, Variant::Unfused];

    /// The name calibration.json uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Variant::Unfused => "unfused",
            Variant::RuntimeExtended => "runtime_extended",
            Variant::RuntimeAll => "runtime_all",
            Variant::Explicit => "explicit",
        }
    }

    /// Whether it is one of ORT's own levels (`runtime_extended`, `runtime_all`).
    pub fn is_runtime(self) -> bool {
        matches!(self, Variant::RuntimeExtended | Variant::RuntimeAll)
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl PartialEq<str> for Variant {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Variant {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// Prefix calibration.json gives `explicit_unavailable` when the rewrite or its session failed.
const FAILED_PREFIX: &str = "failed: ";

/// Why a record has no explicit variant: ORT has no fused kernel for the pattern on the provider (a
/// fact about ORT), or the rewrite or its session failed (a problem worth a warning).
///
/// calibration.json holds it as one string, a failure prefixed `failed: `; it reads (derefs, displays)
/// as that string, so that what is shown is what the file holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExplicitUnavailable {
    failed: bool,
    /// As calibration.json holds it: the reason, prefixed `failed: ` for a failure.
    text: String,
}

impl ExplicitUnavailable {
    /// ORT has no fused kernel for the pattern (or the rewrite does not apply), for this reason.
    pub fn no_kernel(reason: impl Into<String>) -> Self {
        ExplicitUnavailable { failed: false, text: reason.into() }
    }

    /// The rewrite or its session failed, for this reason.
    pub fn failed(reason: impl fmt::Display) -> Self {
        ExplicitUnavailable { failed: true, text: format!("{FAILED_PREFIX}{reason}") }
    }

    /// Whether the rewrite or its session failed (rather than ORT lacking a kernel).
    pub fn is_failed(&self) -> bool {
        self.failed
    }

    /// The reason alone, without the `failed: ` prefix.
    pub fn reason(&self) -> &str {
        if self.failed {
            &self.text[FAILED_PREFIX.len()..]
        } else {
            &self.text
        }
    }
}

/// Its text as calibration.json holds it: a failure when prefixed `failed: `.
impl From<&str> for ExplicitUnavailable {
    fn from(text: &str) -> Self {
        ExplicitUnavailable::from(text.to_string())
    }
}

/// Its text as calibration.json holds it: a failure when prefixed `failed: `.
impl From<String> for ExplicitUnavailable {
    fn from(text: String) -> Self {
        ExplicitUnavailable { failed: text.starts_with(FAILED_PREFIX), text }
    }
}

impl std::ops::Deref for ExplicitUnavailable {
    type Target = str;

    fn deref(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for ExplicitUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for ExplicitUnavailable {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for ExplicitUnavailable {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(ExplicitUnavailable::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_keep_their_strings() {
        for v in Variant::ALL {
            let json = serde_json::to_string(&v).unwrap();
            assert_eq!(json, format!("\"{}\"", v.as_str()));
            assert_eq!(serde_json::from_str::<Variant>(&json).unwrap(), v);
        }
        assert_eq!(Variant::default(), "unfused");
    }

    #[test]
    fn explicit_unavailable_round_trips_its_text() {
        let f = ExplicitUnavailable::failed("creating the session: boom");
        assert!(f.is_failed());
        assert_eq!(f.reason(), "creating the session: boom");
        assert_eq!(serde_json::to_string(&f).unwrap(), "\"failed: creating the session: boom\"");
        let back: ExplicitUnavailable = serde_json::from_str("\"failed: creating the session: boom\"").unwrap();
        assert_eq!(back, f);
        let n: ExplicitUnavailable = serde_json::from_str("\"ORT has no fused kernel\"").unwrap();
        assert!(!n.is_failed());
        assert_eq!((n.reason(), &*n), ("ORT has no fused kernel", "ORT has no fused kernel"));
        assert_eq!(n, ExplicitUnavailable::no_kernel("ORT has no fused kernel"));
    }
}
