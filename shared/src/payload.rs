//! What a JSON document must be for Herald to store and deliver it: a check
//! run on every event's `data` (at the api and in the dispatcher, for events
//! that came straight over AMQP) and on every request body the api parses.
//!
//! serde_json already refuses malformed JSON; this check refuses well-formed
//! JSON that Postgres cannot store as `jsonb` or that costs out of all
//! proportion to its size, and says where:
//! - a `\u0000` escape in a string or key (Postgres text cannot hold NUL);
//! - a lone UTF-16 surrogate escape such as `"\ud800"`;
//! - a number longer than [`MAX_NUMBER_CHARS`], outside a 64-bit float's
//!   range, or so small it rounds to zero (Postgres would store `1e-20000`
//!   as twenty thousand digits, if at all);
//! - nesting deeper than the limit (Postgres runs out of stack on 100,000
//!   levels), or an object with more keys than the limit.
//!
//! The scan is one pass over bytes serde_json has already validated, with
//! no allocation unless it finds a problem.

use std::fmt;

/// Characters in one JSON number, at most.
pub const MAX_NUMBER_CHARS: usize = 100;

/// How much a document may nest and hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Arrays and objects inside one another, the outermost counting one.
    pub max_depth: usize,
    /// Keys in one object.
    pub max_keys: usize,
}

impl Limits {
    /// An event's `data`.
    pub const DATA: Self = Self {
        max_depth: 64,
        max_keys: 10_000,
    };
    /// A whole request body (its `data`, if any, is checked again with
    /// [`Limits::DATA`]; the extra levels are the envelope's).
    pub const BODY: Self = Self {
        max_depth: 64 + 4,
        max_keys: 10_000,
    };
}

/// Where a document breaks the rules, and which rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// A path such as `a.b[3]` from the document's root (empty for the
    /// root itself).
    pub path: String,
    pub detail: &'static str,
}

impl Problem {
    /// The path under a field name: `data` + `a.b` → `data.a.b`.
    #[must_use]
    pub fn under(&self, field: &str) -> String {
        match (field.is_empty(), self.path.is_empty()) {
            (true, _) => self.path.clone(),
            (false, true) => field.to_owned(),
            (false, false) if self.path.starts_with('[') => format!("{field}{}", self.path),
            (false, false) => format!("{field}.{}", self.path),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(self.detail)
        } else {
            write!(f, "{}: {}", self.path, self.detail)
        }
    }
}

/// Checks a document that serde_json has already parsed (it is valid JSON).
///
/// # Errors
/// The first place that breaks a rule.
pub fn check(json: &str, limits: Limits) -> Result<(), Problem> {
    Scanner {
        bytes: json.as_bytes(),
        pos: 0,
        limits,
        stack: Vec::new(),
    }
    .run()
}

/// One open array or object: its element (or key) count so far, and for an
/// object its latest key (where it starts and ends) and whether the next
/// string is a key.
#[derive(Debug)]
struct Level {
    object: bool,
    count: usize,
    key: Option<(usize, usize)>,
    expect_key: bool,
}

struct Scanner<'a> {
    bytes: &'a [u8],
    pos: usize,
    limits: Limits,
    stack: Vec<Level>,
}

impl Scanner<'_> {
    fn run(mut self) -> Result<(), Problem> {
        while let Some(&b) = self.bytes.get(self.pos) {
            match b {
                b'{' | b'[' => {
                    if self.stack.len() >= self.limits.max_depth {
                        return Err(self.problem("nests deeper than the limit of levels"));
                    }
                    self.enter_value();
                    self.stack.push(Level {
                        object: b == b'{',
                        count: 0,
                        key: None,
                        expect_key: b == b'{',
                    });
                    self.pos += 1;
                }
                b'}' | b']' => {
                    self.stack.pop();
                    self.pos += 1;
                }
                b',' => {
                    if let Some(level) = self.stack.last_mut() {
                        level.expect_key = level.object;
                    }
                    self.pos += 1;
                }
                b'"' => {
                    let start = self.pos;
                    let is_key = self.stack.last().is_some_and(|l| l.expect_key);
                    if is_key {
                        let max_keys = self.limits.max_keys;
                        if let Some(level) = self.stack.last_mut() {
                            level.count += 1;
                            if level.count > max_keys {
                                return Err(self.problem("has more keys than the limit"));
                            }
                        }
                    } else {
                        self.enter_value();
                    }
                    if is_key {
                        // Known before its content is checked, so that a
                        // bad key names itself.
                        let end = self.string_end(start);
                        if let Some(level) = self.stack.last_mut() {
                            level.key = Some((start, end));
                            level.expect_key = false;
                        }
                    }
                    self.string()?;
                }
                b'-' | b'0'..=b'9' => {
                    self.enter_value();
                    self.number()?;
                }
                b't' | b'f' | b'n' => {
                    self.enter_value();
                    while self.bytes.get(self.pos).is_some_and(u8::is_ascii_lowercase) {
                        self.pos += 1;
                    }
                }
                // `:` and whitespace carry nothing to check.
                _ => self.pos += 1,
            }
        }
        Ok(())
    }

    /// A value starts here: an array counts it (an object counts its keys).
    fn enter_value(&mut self) {
        if let Some(level) = self.stack.last_mut()
            && !level.object
        {
            level.count += 1;
        }
    }

    /// Reads a string from its opening quote to after its closing quote.
    fn string(&mut self) -> Result<(), Problem> {
        self.pos += 1;
        while let Some(&b) = self.bytes.get(self.pos) {
            match b {
                b'"' => {
                    self.pos += 1;
                    return Ok(());
                }
                b'\\' => {
                    if self.bytes.get(self.pos + 1) == Some(&b'u') {
                        let unit = self.hex4(self.pos + 2);
                        match unit {
                            Some(0) => {
                                return Err(self.problem("holds a \\u0000 (NUL) character"));
                            }
                            Some(0xD800..=0xDBFF) => {
                                let low = (self.bytes.get(self.pos + 6) == Some(&b'\\')
                                    && self.bytes.get(self.pos + 7) == Some(&b'u'))
                                .then(|| self.hex4(self.pos + 8))
                                .flatten();
                                if !matches!(low, Some(0xDC00..=0xDFFF)) {
                                    return Err(self.problem("holds a lone UTF-16 surrogate"));
                                }
                                self.pos += 12;
                            }
                            Some(0xDC00..=0xDFFF) => {
                                return Err(self.problem("holds a lone UTF-16 surrogate"));
                            }
                            _ => self.pos += 6,
                        }
                    } else {
                        self.pos += 2;
                    }
                }
                _ => self.pos += 1,
            }
        }
        Ok(())
    }

    /// The position after the closing quote of the string starting at
    /// `start`.
    fn string_end(&self, start: usize) -> usize {
        let mut at = start + 1;
        while let Some(&b) = self.bytes.get(at) {
            match b {
                b'"' => return at + 1,
                b'\\' => at += 2,
                _ => at += 1,
            }
        }
        at.min(self.bytes.len())
    }

    fn hex4(&self, at: usize) -> Option<u32> {
        let digits = self.bytes.get(at..at + 4)?;
        let text = std::str::from_utf8(digits).ok()?;
        u32::from_str_radix(text, 16).ok()
    }

    fn number(&mut self) -> Result<(), Problem> {
        let start = self.pos;
        while self
            .bytes
            .get(self.pos)
            .is_some_and(|b| matches!(b, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
        {
            self.pos += 1;
        }
        let text = std::str::from_utf8(&self.bytes[start..self.pos]).unwrap_or_default();
        if text.len() > MAX_NUMBER_CHARS {
            return Err(self.problem("is a number longer than 100 characters"));
        }
        let value: f64 = text.parse().unwrap_or(f64::INFINITY);
        if !value.is_finite() {
            return Err(self.problem("is a number beyond the range of a 64-bit float"));
        }
        if value == 0.0 && significand_has_nonzero(text) {
            return Err(self.problem("is a number too small for a 64-bit float"));
        }
        Ok(())
    }

    /// The problem at the current place, with its path.
    fn problem(&self, detail: &'static str) -> Problem {
        let mut path = String::new();
        for level in &self.stack {
            if level.object {
                if let Some((start, end)) = level.key {
                    let raw = &self.bytes[start..end];
                    let key: String = serde_json::from_slice(raw)
                        .unwrap_or_else(|_| String::from_utf8_lossy(raw).into_owned());
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(&key.replace('\0', "\u{FFFD}"));
                }
            } else if level.count > 0 {
                path.push_str(&format!("[{}]", level.count - 1));
            }
        }
        Problem { path, detail }
    }
}

/// True when a number's digits before any exponent hold a non-zero digit.
fn significand_has_nonzero(text: &str) -> bool {
    text.split(['e', 'E'])
        .next()
        .is_some_and(|s| s.bytes().any(|b| matches!(b, b'1'..=b'9')))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(json: &str) -> Option<Problem> {
        check(json, Limits::DATA).err()
    }

    #[test]
    fn ordinary_documents_pass() {
        for ok in [
            r#"{}"#,
            r#"{"a": [1, -2.5e10, true, false, null, "x\"y", {"b": "\u00e9\ud83d\ude00"}]}"#,
            r#""\\u0000 is text here, not an escape""#,
            "1e308",
            "-0.0",
            "0",
            "1e-300",
            "[]",
        ] {
            assert_eq!(problem(ok), None, "{ok}");
        }
    }

    #[test]
    fn nul_and_lone_surrogates_are_refused_with_their_path() {
        let p = problem(r#"{"a": {"b": [1, "x\u0000y"]}}"#).unwrap();
        assert_eq!(p.path, "a.b[1]");
        assert!(p.detail.contains("NUL"));
        assert_eq!(problem(r#"{"k\u0000": 1}"#).unwrap().path, "k\u{FFFD}");
        assert!(
            problem(r#"["\ud800"]"#)
                .unwrap()
                .detail
                .contains("surrogate")
        );
        assert!(problem(r#"["\udc00\ud800"]"#).is_some());
        assert!(problem(r#"["\ud800x"]"#).is_some());
        assert!(problem(r#"["\ud800\u0041"]"#).is_some());
    }

    #[test]
    fn numbers_must_fit_a_float() {
        assert!(problem("1e400").is_some());
        assert!(problem("-1e400").is_some());
        assert!(problem("1e-20000").is_some());
        assert!(problem(&format!("1{}", "0".repeat(400))).is_some());
        assert!(problem(&format!("0.{}1", "0".repeat(20))).is_none());
        assert_eq!(problem(r#"{"n": [0, 1e999]}"#).unwrap().path, "n[1]");
    }

    #[test]
    fn depth_and_keys_are_bounded() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(problem(&deep(64)).is_none());
        let p = problem(&deep(65)).unwrap();
        assert!(p.detail.contains("deeper"));
        assert!(problem(&deep(100_000)).is_some());
        let keys = |n: usize| {
            let body: Vec<String> = (0..n).map(|i| format!("\"k{i}\": {i}")).collect();
            format!("{{{}}}", body.join(","))
        };
        assert!(problem(&keys(10_000)).is_none());
        assert!(problem(&keys(10_001)).unwrap().detail.contains("keys"));
    }

    #[test]
    fn paths_name_the_place_under_a_field() {
        let p = problem(r#"[{"a": 1}, {"b": {"c": "\u0000"}}]"#).unwrap();
        assert_eq!(p.path, "[1].b.c");
        assert_eq!(p.under("events"), "events[1].b.c");
        let p = problem(r#"{"a": 1, "b": "\u0000"}"#).unwrap();
        assert_eq!(p.under("data"), "data.b");
        let p = problem("1e999").unwrap();
        assert_eq!(p.under("data"), "data");
    }

    mod properties {
        use proptest::prelude::*;
        use serde_json::Value;

        use super::super::*;

        const SMALL: Limits = Limits {
            max_depth: 4,
            max_keys: 5,
        };

        fn json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                any::<f64>()
                    .prop_filter("finite", |f| f.is_finite())
                    .prop_map(Value::from),
                any::<String>().prop_map(Value::String),
            ];
            leaf.prop_recursive(8, 128, 8, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                    prop::collection::btree_map(any::<String>(), inner, 0..8)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        /// What the check promises, written plainly over the parsed value.
        fn storable(v: &Value, level: usize, limits: Limits) -> bool {
            match v {
                Value::String(s) => !s.contains('\0'),
                Value::Array(items) => {
                    level <= limits.max_depth
                        && items.iter().all(|x| storable(x, level + 1, limits))
                }
                Value::Object(map) => {
                    level <= limits.max_depth
                        && map.len() <= limits.max_keys
                        && map
                            .iter()
                            .all(|(k, x)| !k.contains('\0') && storable(x, level + 1, limits))
                }
                _ => true,
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn the_check_agrees_with_its_plain_statement(v in json()) {
                let text = serde_json::to_string(&v).unwrap();
                prop_assert_eq!(check(&text, SMALL).is_ok(), storable(&v, 1, SMALL), "{}", text);
                let pretty = serde_json::to_string_pretty(&v).unwrap();
                prop_assert_eq!(check(&pretty, SMALL).is_ok(), storable(&v, 1, SMALL));
            }

            #[test]
            fn escapes_pass_exactly_when_they_decode_to_text_without_nul(
                units in prop::collection::vec(any::<u16>(), 0..6),
                key in any::<bool>(),
            ) {
                let escaped: String = units.iter().map(|u| format!("\\u{u:04x}")).collect();
                let text = if key {
                    format!("{{\"{escaped}\": 1}}")
                } else {
                    format!("[\"{escaped}\"]")
                };
                let decoded = serde_json::from_str::<Value>(&text);
                let clean = decoded.as_ref().is_ok_and(|v| storable(v, 1, Limits::DATA));
                prop_assert_eq!(check(&text, Limits::DATA).is_ok(), clean, "{}", text);
            }

            #[test]
            fn any_text_is_scanned_without_panicking(text in any::<String>()) {
                let _ = check(&text, Limits::DATA);
            }
        }
    }
}
