//! The envelopes of the webhook systems teams move to Herald from, each a
//! format picked with one word, so their receivers keep working unchanged:
//!
//! * `vaultls`: `event` (the type), `timestamp` (Unix seconds),
//!   `tenant_id`, `webhook_id`, `data`;
//! * `securebase`: `event`, `timestamp` (RFC 3339, seconds, `Z`), `data`;
//! * `vaulytica`: `timestamp`, `source`, `event_type`, `severity`, `data`,
//!   written as Python's `json.dumps(payload, sort_keys=True)` writes it,
//!   because Vaulytica's receivers sign that re-serialization;
//! * `webnet`: `event_timestamp`, `event_type`, and the data's own fields
//!   beside them (its payloads carry `actor`, `job`… at the top).

use chrono::SecondsFormat;
use serde_json::{Map, Value, json};

use super::{EventView, data_value};

/// RFC 3339 in whole seconds with `Z`, as the seeds write times.
fn seconds(e: &EventView<'_>) -> String {
    e.timestamp.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub(super) fn vaultls(e: &EventView<'_>) -> Result<Value, serde_json::Error> {
    Ok(json!({
        "event": e.event_type,
        "timestamp": e.timestamp.timestamp(),
        "tenant_id": e.tenant_id,
        "webhook_id": e.webhook_id,
        "data": data_value(e)?,
    }))
}

pub(super) fn securebase(e: &EventView<'_>) -> Result<Value, serde_json::Error> {
    Ok(json!({
        "event": e.event_type,
        "timestamp": seconds(e),
        "data": data_value(e)?,
    }))
}

/// The body bytes: Python's `json.dumps(…, sort_keys=True)` of the
/// envelope (the event's source, else `herald`; its severity, else
/// `info`).
pub(super) fn vaulytica(e: &EventView<'_>) -> Result<Vec<u8>, serde_json::Error> {
    let envelope = json!({
        "timestamp": seconds(e),
        "source": e.source.unwrap_or("herald"),
        "event_type": e.event_type,
        "severity": e.severity.map_or("info", herald_shared::models::Severity::as_str),
        "data": data_value(e)?,
    });
    let mut out = String::with_capacity(e.data.get().len() + 160);
    python_dumps(&envelope, &mut out);
    Ok(out.into_bytes())
}

pub(super) fn webnet(e: &EventView<'_>) -> Result<Value, serde_json::Error> {
    let mut body = Map::new();
    body.insert("event_timestamp".to_owned(), json!(seconds(e)));
    body.insert("event_type".to_owned(), json!(e.event_type));
    match data_value(e)? {
        Value::Object(fields) => {
            for (k, v) in fields {
                // The envelope's own two fields are Herald's to set.
                if k != "event_timestamp" && k != "event_type" {
                    body.insert(k, v);
                }
            }
        }
        other => {
            body.insert("data".to_owned(), other);
        }
    }
    Ok(Value::Object(body))
}

/// Writes `v` as CPython's `json.dumps(v, sort_keys=True)` does: `", "`
/// and `": "` separators, keys in code point order, every character
/// outside ASCII escaped (`ensure_ascii`), floats as `repr` prints them.
pub fn python_dumps(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => out.push_str(&i.to_string()),
            (_, Some(u), _) => out.push_str(&u.to_string()),
            (_, _, Some(f)) => out.push_str(&python_float(f)),
            _ => out.push_str(&n.to_string()),
        },
        Value::String(s) => python_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                python_dumps(item, out);
            }
            out.push(']');
        }
        Value::Object(fields) => {
            // UTF-8 byte order is code point order.
            let mut keys: Vec<&String> = fields.keys().collect();
            keys.sort_unstable();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                python_string(k, out);
                out.push_str(": ");
                python_dumps(&fields[k], out);
            }
            out.push('}');
        }
    }
}

fn python_string(s: &str, out: &mut String) {
    use std::fmt::Write;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

/// A float as Python's `repr`: the shortest digits that round-trip, fixed
/// notation for exponents from -4 to 15 (always with a fraction), else
/// `d.ddde+XX`.
fn python_float(f: f64) -> String {
    if !f.is_finite() {
        // JSON that passed Herald's payload check holds no such number.
        return if f.is_nan() {
            "NaN".to_owned()
        } else if f > 0.0 {
            "Infinity".to_owned()
        } else {
            "-Infinity".to_owned()
        };
    }
    // `{:e}` gives the shortest round-trip digits: "-1.2345e-7".
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = mantissa
        .strip_prefix('-')
        .map_or(("", mantissa), |m| ("-", m));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if (-4..16).contains(&exp) {
        let point = exp + 1;
        let text = if point <= 0 {
            let zeros = usize::try_from(-point).unwrap_or(0);
            format!("0.{}{digits}", "0".repeat(zeros))
        } else {
            let point = usize::try_from(point).unwrap_or(0);
            if digits.len() <= point {
                format!("{digits}{}.0", "0".repeat(point - digits.len()))
            } else {
                format!("{}.{}", &digits[..point], &digits[point..])
            }
        };
        format!("{sign}{text}")
    } else {
        let (first, rest) = digits.split_at(1);
        let fraction = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let exp_sign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{first}{fraction}e{exp_sign}{:02}", exp.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dumps(v: &Value) -> String {
        let mut out = String::new();
        python_dumps(v, &mut out);
        out
    }

    #[test]
    fn floats_print_as_python_repr() {
        // What CPython 3.11's repr() prints for each.
        for (f, python) in [
            (250.0, "250.0"),
            (0.1, "0.1"),
            (-2.5, "-2.5"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.5e-7, "1.5e-07"),
            (0.0001, "0.0001"),
            (0.000_012_3, "1.23e-05"),
            (123_456.789, "123456.789"),
            (1.797_693_134_862_315_7e308, "1.7976931348623157e+308"),
            (0.0, "0.0"),
        ] {
            assert_eq!(python_float(f), python, "{f}");
        }
    }

    #[test]
    fn dumps_sorts_keys_and_escapes_like_python() {
        // What CPython 3.11 prints for
        // json.dumps(json.loads(input), sort_keys=True).
        let input = r#"{"b": [1, 2.0, {"z": null, "a": true}], "a": "café ✓ 𝄞 \"q\" \\ \n\t\u0001", "é": 1}"#;
        let v: Value = serde_json::from_str(input).unwrap();
        assert_eq!(
            dumps(&v),
            r#"{"a": "caf\u00e9 \u2713 \ud834\udd1e \"q\" \\ \n\t\u0001", "b": [1, 2.0, {"a": true, "z": null}], "\u00e9": 1}"#
        );
        assert_eq!(dumps(&json!([])), "[]");
        assert_eq!(dumps(&json!({})), "{}");
        assert_eq!(dumps(&json!(-17)), "-17");
        assert_eq!(dumps(&json!(u64::MAX)), "18446744073709551615");
    }
}
