//! `herald-api [serve]` serves the API; `herald-api migrate` creates the
//! database if needed, applies the migrations and exits.

use anyhow::Context;
use herald_api::startup::Application;
use herald_shared::db;
use herald_shared::runtime::config::Settings;
use herald_shared::runtime::{shutdown, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load()?;
    telemetry::init(settings.log.format);
    let command = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "serve".to_owned());
    match command.as_str() {
        "serve" => {
            let app = Application::build(settings, None).await?;
            app.run_until_stopped(shutdown::on_signal()).await
        }
        "migrate" => {
            db::ensure_database(&settings.database).await?;
            let pool = settings.database.pool()?;
            db::migrate(&pool).await.context("migrating")?;
            tracing::info!("migrations applied");
            Ok(())
        }
        other => anyhow::bail!("unknown command {other:?}; use `serve` (default) or `migrate`"),
    }
}
