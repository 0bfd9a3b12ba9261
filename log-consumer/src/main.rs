use clap::Parser;
use log_consumer::{settings::Settings, startup::Application};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::parse();
    log_common::telemetry::init("log-consumer");
    tracing::info!(?settings, "effective configuration");
    let app = Application::build(settings).await?;
    app.run_until_stopped(log_common::shutdown::signal()).await
}
