//! `herald-dispatcher`: runs one dispatcher until SIGTERM.

use herald_shared::runtime::config::Settings;
use herald_shared::runtime::{shutdown, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load()?;
    telemetry::init(settings.log.format);
    herald_dispatcher::run::run(settings, None, shutdown::on_signal()).await
}
