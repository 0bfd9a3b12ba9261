use log_shipper::{settings::Settings, startup::Application};

fn main() -> anyhow::Result<()> {
    // Before any thread starts: the config file is applied through the environment.
    let settings = Settings::load()?;
    log_common::telemetry::init("log-shipper");
    tracing::info!(?settings, "effective configuration");
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(async {
            let app = Application::build(settings).await?;
            app.run_until_stopped(log_common::shutdown::signal()).await
        })
}
