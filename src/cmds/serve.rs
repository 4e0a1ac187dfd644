//! `vigil serve`.

use crate::api;
use crate::app::App;
use crate::config::Config;

/// Opens everything, prints a generated admin key once, starts projections and serves HTTP
/// until Ctrl-C or SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let listen = config.listen;
    // The models are the main job: a server without their weights would answer every analysis
    // with 503, so it does not start. (Hashing the weights takes a fraction of a second.)
    let assets = config.effective_assets_dir();
    let weights = tokio::task::spawn_blocking(move || vigil_models::check_weights(&assets)).await?;
    if let Err(e) = &weights {
        anyhow::bail!(
            "the models' weights are not ready: {e}\n\
             Fetch them into {} with `{}` (set VIGIL_ASSETS to fetch elsewhere, and \
             VIGIL_ASSETS_DIR to serve from there); `vigil doctor` checks the whole setup.",
            config.effective_assets_dir().display(),
            vigil_models::FETCH_WEIGHTS,
        );
    }
    let (app, generated) = App::open(config).await?;
    let _ = app.weights_checked(weights.map_err(|e| e.to_string()));
    // Load the models now, so the first frame does not wait for them.
    app.ingest().pool().preload();
    let declared = crate::declared::reconcile(app.config(), app.handler()).await?;
    if !app.config().cameras.is_empty() || !declared.disabled.is_empty() {
        tracing::info!(
            registered = ?declared.registered,
            updated = ?declared.updated,
            disabled = ?declared.disabled,
            unchanged = declared.unchanged.len(),
            "cameras declared in the config file reconciled"
        );
    }
    if let Some(key) = generated {
        eprintln!(
            "\nGenerated the admin API key. It is shown only this once; only its hash is stored:\n\n    {key}\n\nSend it as the X-API-Key header. Set VIGIL_ADMIN_KEY to use a key of your own.\n"
        );
    }
    // The models' device: a forced `wgpu` must be there before serving; `auto` is resolved in
    // the background and logged (GET /api/v1/system/gpu reports it).
    let probe = app.clone();
    let compute = tokio::task::spawn_blocking(move || {
        probe
            .compute()
            .map(|c| {
                tracing::info!(backend = c.backend, adapter = %c.adapter, physical = c.physical, "models device");
            })
            .map_err(str::to_string)
    });
    if app.config().models_backend == vigil_models::BackendPreference::Wgpu {
        compute
            .await?
            .map_err(|e| anyhow::anyhow!("models_backend = wgpu: {e}"))?;
    }
    let mut background = app.spawn_background();
    background.push(tokio::spawn(crate::service::clips::keep_within_budget(
        app.clone(),
    )));
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let media = app.ingest().blobs();
    let media = media
        .remote_label()
        .map_or_else(|| media.root().display().to_string(), str::to_string);
    let vectors = app.vectors().location().to_string();
    tracing::info!(address = %listener.local_addr()?, backend = ?app.backend(), %media, %vectors, "vigil listening");
    let app_for_flush = app.clone();
    api::serve(app, listener, shutdown_signal()).await?;
    // Camera actors end their open tracks and record `stopped` before the store goes away.
    app_for_flush.stop_ingest().await;
    for task in background {
        task.abort();
    }
    if let Err(err) = app_for_flush.flush_usage().await {
        tracing::warn!(error = %err, "could not write the last API key usage counts");
    }
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
