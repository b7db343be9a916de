//! Logging: `tracing` with an `EnvFilter` (`RUST_LOG`, else Herald at
//! `info`), human-readable by default and JSON for log pipelines.

use tracing_subscriber::EnvFilter;

use crate::runtime::config::LogFormat;

const DEFAULT_FILTER: &str =
    "info,herald_shared=info,herald_api=info,herald_dispatcher=info,herald_worker=info,lapin=warn";

/// The database driver logs every statement's parameters at debug level:
/// payloads, sealed values, anything. Those lines never reach a log,
/// whatever level is asked for.
const NEVER: &[&str] = &["tokio_postgres::query=info"];

/// The filter from `RUST_LOG` (else `default`), less what must never be
/// logged.
fn filter(default: &str) -> EnvFilter {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    for directive in NEVER {
        if let Ok(d) = directive.parse() {
            filter = filter.add_directive(d);
        }
    }
    filter
}

/// Installs the global subscriber. A second call (several apps in one test
/// process) is harmless.
pub fn init(format: LogFormat) {
    let filter = filter(DEFAULT_FILTER);
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    // `try_init` fails only when a subscriber is already set, which is fine.
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

/// For tests: output captured per test, shown only when it fails.
pub fn init_for_tests() {
    let filter = filter("warn");
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}
