//! `wearbridge simulate`: run the simulator in the foreground for manual testing.

use crate::simulator::{self, Fault, Simulator, SimulatorConfig};

/// Serves until Ctrl-C; readings are generated relative to `config.clock` (`--now`); the
/// simulated node knows `streams` (id, partitions).
pub async fn main(
    config: SimulatorConfig,
    streams: &[(String, u32)],
    faults: &[(String, Fault, u32)],
    write_config: Option<&std::path::Path>,
    push_every: Option<std::time::Duration>,
) -> anyhow::Result<()> {
    let (hr_interval, withings_quota) = (config.hr_interval, config.withings_requests_per_minute);
    let listen = config.listen;
    let sim = Simulator::start(config)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen} (choose another with --listen): {e}"))?;
    for (endpoint, fault, times) in faults {
        sim.faults().inject(endpoint, fault.clone(), *times);
        let times = if *times == u32::MAX { "every".to_owned() } else { times.to_string() };
        println!("fault:                                   {endpoint}: {fault:?} ({times} requests)");
    }
    for (stream, partitions) in streams {
        sim.register_stream(stream, *partitions);
        println!("streamr stream (streamr.streams):         {stream} ({partitions} partitions)");
    }
    println!("simulated now:                           {}", sim.clock().now().to_rfc3339());
    println!("heart rate while worn:                   every {} s", hr_interval.as_secs());
    match withings_quota {
        Some(n) => println!("withings quota (601 past it):            {n} requests a minute"),
        None => println!("withings quota:                          off"),
    }
    println!("google health api (fitbit.api_base_url): {}", sim.google_api_base());
    println!("google oauth token (fitbit.token_url):   {}", sim.google_token_url());
    println!("google consent (fitbit.auth_url):        {}", sim.google_auth_url());
    println!("google revoke (fitbit.revoke_url):       {}", sim.google_revoke_url());
    println!("withings api (withings.api_base_url):    {}", sim.withings_api_base());
    println!("withings consent (withings.auth_url):    {}", sim.withings_auth_url());
    println!("streamr node, http plugin (streamr.url):  {}", sim.streamr_http_url());
    println!("streamr node, ws plugin (streamr.url):    {}", sim.streamr_ws_url());
    println!("streamr api key (streamr.api_key):       {}", simulator::STREAMR_API_KEY);
    println!("client id (fitbit.client_id, withings.client_id):             {}", simulator::CLIENT_ID);
    println!("client secret (fitbit.client_secret, withings.client_secret): {}", simulator::CLIENT_SECRET);
    for p in sim.people() {
        println!("{}: fitbit refresh token {}", p.name, p.refresh_token);
        println!("{}: withings refresh token {}", p.name, p.withings_refresh_token);
    }
    if let Some(path) = write_config {
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
        let stream = streams.first().map_or("wearbridge-demo.eth/health", |(s, _)| s.as_str());
        std::fs::write(path, sim.config_toml(&dir, stream))
            .map_err(|e| anyhow::anyhow!("cannot write {} (--write-config): {e}", path.display()))?;
        println!("configuration for wearbridge run:        {}", path.display());
        let key = dir.join("google-health-push.pem");
        std::fs::write(&key, sim.google_public_key_pem())
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", key.display()))?;
        println!("google notification key (push.google_public_key_file): {}", key.display());
    }
    println!("google admin token (push setup --google-admin-token-file): {}", simulator::GOOGLE_ADMIN_TOKEN);
    let sim = std::sync::Arc::new(sim);
    let pushing = push_every.map(|every| {
        println!("readings and notifications:              every {} s", every.as_secs());
        tokio::spawn(push_readings(sim.clone(), every))
    });
    println!("serving until Ctrl-C");
    tokio::signal::ctrl_c().await?;
    if let Some(task) = pushing {
        task.abort();
    }
    if let Ok(sim) = std::sync::Arc::try_unwrap(sim) {
        sim.stop().await;
    }
    Ok(())
}

/// Every `every`, each person's devices sync and both providers notify.
async fn push_readings(sim: std::sync::Arc<Simulator>, every: std::time::Duration) {
    let mut tick = tokio::time::interval(every.max(std::time::Duration::from_secs(1)));
    tick.tick().await;
    for round in 0u64.. {
        tick.tick().await;
        let now = sim.clock().now();
        let from = now - chrono::TimeDelta::from_std(every).unwrap_or(chrono::TimeDelta::hours(1));
        for p in 0..sim.people().len() {
            let kg = 70.0 + (round % 20) as f64 / 10.0 + p as f64;
            let google = sim.notify_google(p, "heart-rate", from, now).await;
            let fitbit = sim.add_weight(p, crate::sources::fitbit::PROVIDER, now, kg).await;
            let withings = sim.add_weight(p, crate::sources::withings::PROVIDER, now, kg + 0.5).await;
            println!(
                "{}: readings added; notifications answered {:?}",
                now.to_rfc3339(),
                [google, fitbit, withings].concat()
            );
        }
    }
}
