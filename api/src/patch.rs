//! A field of a partial update: absent (keep what is stored), `null`
//! (remove it), or a value (set it).

use serde::{Deserialize, Deserializer};

/// One field of a PATCH body. Declare it with `#[serde(default)]` so that
/// an absent field reads as [`Patch::Absent`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Patch<T> {
    /// Not in the body: the stored value stays.
    #[default]
    Absent,
    /// An explicit `null`: the stored value is removed.
    Null,
    /// A new value.
    Value(T),
}

impl<T> Patch<T> {
    /// The value after the update, given the current one.
    pub fn apply(self, current: Option<T>) -> Option<T> {
        match self {
            Self::Absent => current,
            Self::Null => None,
            Self::Value(v) => Some(v),
        }
    }

    /// Whether the body names this field at all.
    pub const fn is_given(&self) -> bool {
        !matches!(self, Self::Absent)
    }

    /// The value with `f` applied, keeping absent and `null` as they are.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Patch<U> {
        match self {
            Self::Absent => Patch::Absent,
            Self::Null => Patch::Null,
            Self::Value(v) => Patch::Value(f(v)),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Patch<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Option::<T>::deserialize(d).map(|v| v.map_or(Self::Null, Self::Value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Body {
        #[serde(default)]
        limit: Patch<i64>,
    }

    fn read(json: &str) -> Patch<i64> {
        serde_json::from_str::<Body>(json).unwrap().limit
    }

    #[test]
    fn absent_null_and_value_are_three_things() {
        assert_eq!(read("{}"), Patch::Absent);
        assert_eq!(read(r#"{"limit":null}"#), Patch::Null);
        assert_eq!(read(r#"{"limit":7}"#), Patch::Value(7));
        assert!(serde_json::from_str::<Body>(r#"{"limit":"x"}"#).is_err());
    }

    #[test]
    fn apply_keeps_removes_or_sets() {
        assert_eq!(Patch::Absent.apply(Some(1)), Some(1));
        assert_eq!(Patch::<i64>::Null.apply(Some(1)), None);
        assert_eq!(Patch::Value(2).apply(Some(1)), Some(2));
        assert_eq!(Patch::Value(2).apply(None), Some(2));
        assert!(!Patch::<i64>::Absent.is_given());
        assert!(Patch::<i64>::Null.is_given());
        assert_eq!(Patch::Value(2).map(|v| v * 3), Patch::Value(6));
    }
}
