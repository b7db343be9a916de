//! A webhook's payload filter: a JSONPath filter expression (RFC 9535,
//! the part inside `[?…]`) over the event's `data`, such as
//! `@.amount > 1000 && @.currency == 'EUR'`. The webhook receives an event
//! only when the expression holds.
//!
//! Why JSONPath: it is a standard (RFC 9535) with a maintained Rust
//! implementation (`serde_json_path`), users of webhook systems already
//! write it, and it has no loops, variables or side effects: evaluating an
//! expression visits each node of `data` a bounded number of times. Three
//! things could still make one expensive, and a filter may use none of
//! them: the descendant segment `..` and the root `$` inside an expression
//! (nested under a filter, each multiplies the work by the size of the
//! data), and the regular-expression functions `match` and `search` (the
//! implementation compiles the pattern afresh at every node). With those
//! out, and the expression at most [`MAX_LEN`] characters, the cost per
//! event is linear in the size of `data` times the size of the expression.
//! An expression is compiled once, when the webhook is saved (a 422 names
//! `filter`) and when the dispatcher loads the tenant's subscriptions.

use serde_json::Value;
use serde_json_path::JsonPath;

/// An expression's length in characters, at most.
pub const MAX_LEN: usize = 1024;

/// A compiled filter.
#[derive(Debug, Clone)]
pub struct Filter {
    path: JsonPath,
}

impl Filter {
    /// Compiles a filter expression.
    ///
    /// # Errors
    /// Too long, using what a filter may not use, or not a JSONPath filter
    /// expression; the message says which.
    pub fn compile(expression: &str) -> Result<Self, String> {
        if expression.trim().is_empty() {
            return Err("must not be empty; send null for no filter".to_owned());
        }
        if expression.chars().count() > MAX_LEN {
            return Err(format!("must be at most {MAX_LEN} characters"));
        }
        if expression.contains("..") {
            return Err("may not use the descendant segment `..`".to_owned());
        }
        if expression.contains('$') {
            return Err("may not use the root `$`; `@` is the event's data".to_owned());
        }
        let path = JsonPath::parse(&format!("$[?{expression}]"))
            .map_err(|e| format!("is not a JSONPath filter expression: {e}"))?;
        Ok(Self { path })
    }

    /// Whether the event's data, as [`wrap`] gave it, passes.
    #[must_use]
    pub fn matches(&self, wrapped: &Value) -> bool {
        !self.path.query(wrapped).is_empty()
    }
}

/// The event's data as filters take it: the only element of an array, so
/// that `$[?…]` tests the data itself. Done once per event, whatever the
/// number of filters.
#[must_use]
pub fn wrap(data: Value) -> Value {
    Value::Array(vec![data])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn passes(expression: &str, data: Value) -> bool {
        Filter::compile(expression).unwrap().matches(&wrap(data))
    }

    #[test]
    fn filters_test_the_data_itself() {
        let f = "@.amount > 1000 && @.currency == 'EUR'";
        assert!(passes(f, json!({"amount": 1500, "currency": "EUR"})));
        assert!(!passes(f, json!({"amount": 1500, "currency": "USD"})));
        assert!(!passes(f, json!({"amount": 999, "currency": "EUR"})));
        assert!(!passes(f, json!({"currency": "EUR"})), "a missing field");
        assert!(!passes(f, json!([1, 2])), "data of another shape");
        assert!(passes(
            "@.customer.tier == 'gold'",
            json!({"customer": {"tier": "gold"}})
        ));
        assert!(passes(
            "@.tags[?@ == 'vip']",
            json!({"tags": ["new", "vip"]})
        ));
        assert!(!passes("@.tags[?@ == 'vip']", json!({"tags": ["new"]})));
        assert!(passes("length(@.items) >= 2", json!({"items": [1, 2]})));
        assert!(passes("!@.test", json!({"live": true})), "absence");
    }

    #[test]
    fn what_a_filter_may_not_be() {
        for bad in [
            "",
            "  ",
            "@..amount > 1",
            "$.amount > 1",
            "@.a[?$[0].a[?$[0].a]]",
            "match(@.name, '(a+)+$')",
            "search(@.name, 'x')",
            "@.amount >",
            "@.amount = 1",
            "nonsense(@)",
        ] {
            assert!(Filter::compile(bad).is_err(), "{bad:?} compiled");
        }
        assert!(Filter::compile(&format!("@.a == '{}'", "x".repeat(MAX_LEN))).is_err());
    }
}
