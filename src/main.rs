//! The `ringcast` binary: parses the command line, sets up logs and metrics, binds the
//! listeners and runs the node. Bad configuration exits 64 with one line.

use std::process::ExitCode;

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read before `main` (`_RJEM_MALLOC_CONF` still overrides them): a
/// background thread gives freed pages back after 1 s. By default they wait 10 s, and only
/// allocations move that clock, so an idle node kept the pages of its last burst (a ramp of
/// connections) for good: 0.2–0.4 KiB per idle connection (docs/benchmarks.md, "Density").
#[export_name = "_rjem_malloc_conf"]
static MALLOC_CONF: &[u8] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use ringcast::auth::{self, Claims, KeyConfig};
use ringcast::config::{self, ConfigError, ServeArgs, EX_USAGE};
use ringcast::webhook::sign;
use ringcast::{Config, Node};

#[derive(Parser)]
#[command(name = "ringcast", version, about = "A horizontally sharded WebSocket messaging server")]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// With no subcommand, `ringcast` runs `serve` with these flags.
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node
    Serve(ServeArgs),
    /// Print a signed client token
    Token(TokenArgs),
    /// Run an N-node cluster on loopback for development (Ctrl-C stops it)
    DevCluster(DevClusterArgs),
    /// Print the webhook headers of a body (stdin or a file), or check a signature
    WebhookSign(WebhookSignArgs),
}

#[derive(Args)]
struct WebhookSignArgs {
    /// the webhook secret (whsec_ + base64, or the key itself)
    #[arg(long, env = "RINGCAST_WEBHOOK_SECRET", hide_env_values = true)]
    secret: String,
    /// the webhook-id header
    #[arg(long, default_value = "evt_test")]
    id: String,
    /// the webhook-timestamp header, unix seconds [default: now]
    #[arg(long)]
    timestamp: Option<u64>,
    /// check this webhook-signature header instead of printing one (exit 1 when it does not match)
    #[arg(long)]
    verify: Option<String>,
    /// file holding the body exactly as sent; - for stdin
    #[arg(default_value = "-")]
    body: std::path::PathBuf,
}

#[derive(Args)]
struct DevClusterArgs {
    /// number of nodes
    #[arg(default_value_t = 3)]
    nodes: u16,
    /// client port of the first node; node i listens on base+i
    #[arg(long, default_value_t = 8080)]
    base_port: u16,
    /// cluster port of the first node; node i uses base+i (TCP and UDP)
    #[arg(long, default_value_t = 7946)]
    cluster_base_port: u16,
    /// HS256 key of client tokens [default: a fresh one]
    #[arg(long, env = "RINGCAST_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
}

#[derive(Args)]
struct TokenArgs {
    /// user id (the `sub` claim)
    #[arg(long)]
    sub: String,
    #[arg(long)]
    tenant: Option<String>,
    /// display name
    #[arg(long)]
    name: Option<String>,
    /// comma-separated roles (admin, moderator)
    #[arg(long)]
    roles: Option<String>,
    /// comma-separated group ids
    #[arg(long)]
    groups: Option<String>,
    /// lifetime such as 90s, 15m, 1h, 7d
    #[arg(long, default_value = "1h")]
    ttl: String,
    /// HS256 key
    #[arg(long, env = "RINGCAST_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// PEM private key for RS256, ES256 or EdDSA
    #[arg(long, env = "RINGCAST_JWT_PRIVATE_KEY")]
    jwt_private_key: Option<std::path::PathBuf>,
    #[arg(long, env = "RINGCAST_JWT_ALG")]
    jwt_alg: Option<String>,
    /// TOML file to read jwt-secret from
    #[arg(long, env = "RINGCAST_CONFIG")]
    config: Option<std::path::PathBuf>,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            use clap::error::ErrorKind;
            if matches!(err.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = err.print();
                return ExitCode::SUCCESS;
            }
            let text = err.to_string();
            let line = text.lines().next().unwrap_or("bad command line").trim_start_matches("error: ");
            return usage_error(&ConfigError::new(line.to_string()));
        }
    };
    match cli.command {
        Some(Command::Token(args)) => token(args),
        Some(Command::DevCluster(args)) => dev_cluster(args),
        Some(Command::WebhookSign(args)) => webhook_sign(args),
        Some(Command::Serve(args)) => serve(args),
        None => serve(cli.serve),
    }
}

fn usage_error(err: &ConfigError) -> ExitCode {
    eprintln!("ringcast: {err}");
    ExitCode::from(EX_USAGE as u8)
}

fn token(args: TokenArgs) -> ExitCode {
    let result = (|| -> Result<String, ConfigError> {
        let mut secret = args.jwt_secret.clone();
        if secret.is_none() && args.jwt_private_key.is_none() {
            if let Some(path) = &args.config {
                let file = ServeArgs { config: Some(path.clone()), ..Default::default() }.merge_file()?;
                secret = file.jwt_secret;
            }
        }
        let key =
            KeyConfig::from_options(secret.as_deref(), None, args.jwt_alg.as_deref(), args.jwt_private_key.as_deref())?
                .ok_or_else(|| ConfigError::new("token needs --jwt-secret or --jwt-private-key"))?;
        if !auth::is_valid_user_id(&args.sub) {
            return Err(ConfigError::new("--sub must be 1-256 bytes of UTF-8 without control characters"));
        }
        let ttl = config::parse_duration(&args.ttl)?;
        let now = auth::now_secs();
        let claims = Claims {
            sub: args.sub.clone(),
            exp: now + ttl.as_secs(),
            nbf: None,
            iat: Some(now),
            tenant: args.tenant.clone(),
            name: args.name.clone(),
            roles: args.roles.as_deref().map(config::split_list).unwrap_or_default(),
            groups: args.groups.as_deref().map(config::split_list).unwrap_or_default(),
        };
        auth::mint(&key, &claims).map_err(ConfigError::from)
    })();
    match result {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(err) => usage_error(&err),
    }
}

fn webhook_sign(args: WebhookSignArgs) -> ExitCode {
    use std::io::Read as _;
    let key = match config::parse_secret(&args.secret) {
        Ok(key) => key,
        Err(err) => return usage_error(&err),
    };
    let mut body = Vec::new();
    let read = if args.body.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut body).map(|_| ())
    } else {
        std::fs::read(&args.body).map(|bytes| body = bytes)
    };
    if let Err(err) = read {
        return usage_error(&ConfigError::new(format!("cannot read {}: {err}", args.body.display())));
    }
    let timestamp = args.timestamp.unwrap_or_else(auth::now_secs);
    match args.verify {
        Some(header) if sign::verify(&key, &args.id, timestamp, &body, &header) => {
            println!("valid");
            ExitCode::SUCCESS
        }
        Some(_) => {
            eprintln!("ringcast: invalid signature for id {} and timestamp {timestamp}", args.id);
            ExitCode::FAILURE
        }
        None => {
            println!("webhook-id: {}", args.id);
            println!("webhook-timestamp: {timestamp}");
            println!("webhook-signature: {}", sign::signature(&key, &args.id, timestamp, &body));
            ExitCode::SUCCESS
        }
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let config = match args.resolve() {
        Ok(config) => config,
        Err(err) => return usage_error(&err),
    };
    init_tracing(config.log_json);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = config.worker_threads {
        builder.worker_threads(threads);
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("ringcast: cannot start runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve_async(config))
}

async fn serve_async(config: Config) -> ExitCode {
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(listener) => listener,
        Err(err) => return usage_error(&ConfigError::new(format!("cannot listen on {}: {err}", config.listen))),
    };
    let admin_listener = match config.admin_listen {
        None => None,
        Some(addr) => match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => Some(listener),
            Err(err) => return usage_error(&ConfigError::new(format!("cannot listen on {addr}: {err}"))),
        },
    };
    let metrics_handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()),
            ringcast::metrics::SECONDS_BUCKETS,
        )
        .and_then(|builder| builder.install_recorder())
        .ok();
    // Before the node starts: a store reports its own state after the defaults.
    ringcast::metrics::describe();
    let local_addr = listener.local_addr().map(|addr| addr.to_string()).unwrap_or_default();
    let dev_token = if config.dev { dev_token(&config) } else { None };
    let node = match Node::new(config, metrics_handle) {
        Ok(node) => Arc::new(node),
        Err(err) => return usage_error(&err),
    };
    // A durable store is given a moment to answer its first ping, so a node whose Redis is up
    // is ready as soon as it says it listens; one whose Redis is down starts not ready.
    let store_deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while node.router.owner.store().durable()
        && !node.router.owner.store().up()
        && std::time::Instant::now() < store_deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    if !node.router.owner.store().up() {
        tracing::warn!("redis does not answer yet: not ready until it does");
    }
    if let Err(err) = ringcast::peering::join(&node).await {
        return usage_error(&ConfigError::new(err.to_string()));
    }
    if let Some(tls) = node.config.tls.clone() {
        if let Err(err) = tls.reload_on_sighup(node.shutdown.clone()) {
            return usage_error(&ConfigError::new(format!("cannot listen for SIGHUP: {err}")));
        }
    }
    // Machine-readable start line: tests and scripts wait for it.
    println!("ringcast listening on {local_addr}");
    if let Some(admin_listener) = &admin_listener {
        if let Ok(addr) = admin_listener.local_addr() {
            println!("ringcast admin listening on {addr}");
        }
    }
    if let (Some((secret, token)), true) = (dev_token, node.config.dev) {
        println!("ringcast: no --jwt-secret given: development mode with a generated key (never in production)");
        println!("ringcast: jwt secret: {secret}");
        println!("ringcast: token for user 'dev' (24h): {token}");
        let scheme = if node.config.tls.is_some() { "wss" } else { "ws" };
        println!("ringcast: try: websocat '{scheme}://{local_addr}/v1/ws?token={token}'");
        if node.config.demo {
            let http = if node.config.tls.is_some() { "https" } else { "http" };
            println!("ringcast: demo chat: {http}://{local_addr}/demo#token={token}");
        }
    } else if node.config.demo {
        let http = if node.config.tls.is_some() { "https" } else { "http" };
        println!("ringcast: demo chat: {http}://{local_addr}/demo (it asks for a token)");
    }
    tracing::info!(node_id = %node.id, listen = %local_addr, "ringcast started");
    let drained = ringcast::run(node, listener, admin_listener, shutdown_signal()).await;
    tracing::info!(drained, "ringcast stopped");
    ExitCode::SUCCESS
}

/// Starts `nodes` child processes of this binary as one cluster on loopback, prints how to
/// reach them, and stops them (SIGTERM, a drain) on Ctrl-C or SIGTERM.
fn dev_cluster(args: DevClusterArgs) -> ExitCode {
    if args.nodes == 0 || args.nodes > 64 {
        return usage_error(&ConfigError::new("dev-cluster takes 1 to 64 nodes"));
    }
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(err) => return usage_error(&ConfigError::new(format!("cannot find own binary: {err}"))),
    };
    let secret =
        args.jwt_secret.clone().unwrap_or_else(|| String::from_utf8_lossy(&auth::random_secret()).into_owned());
    let cluster_secret = String::from_utf8_lossy(&auth::random_secret()).into_owned();
    let seeds: Vec<String> = (0..args.nodes).map(|i| format!("127.0.0.1:{}", args.cluster_base_port + i)).collect();
    let mut children = Vec::new();
    for i in 0..args.nodes {
        let child = std::process::Command::new(&exe)
            .args(["serve", "--node-id", &format!("node-{}", i + 1)])
            .args(["--listen", &format!("127.0.0.1:{}", args.base_port + i)])
            .args(["--cluster-listen", &seeds[i as usize]])
            .args(["--seeds", &seeds.join(",")])
            .args(["--demo", "true"])
            .env("RINGCAST_JWT_SECRET", &secret)
            .env("RINGCAST_CLUSTER_SECRET", &cluster_secret)
            .env("RINGCAST_LOG", std::env::var("RINGCAST_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(std::process::Stdio::null())
            .spawn();
        match child {
            Ok(child) => children.push(child),
            Err(err) => {
                eprintln!("ringcast: cannot start node {}: {err}", i + 1);
                stop_children(&mut children);
                return ExitCode::FAILURE;
            }
        }
    }
    let key = KeyConfig::Hs256(secret.as_bytes().to_vec());
    let token = auth::mint(&key, &dev_claims(vec!["admin".into()])).unwrap_or_default();
    println!("ringcast dev-cluster: {} nodes", args.nodes);
    for i in 0..args.nodes {
        println!("  node-{}: ws://127.0.0.1:{}/v1/ws", i + 1, args.base_port + i);
    }
    println!("jwt secret: {secret}");
    println!("token (user dev, admin, 24h): {token}");
    println!("cluster view: curl -H 'Authorization: Bearer {token}' http://127.0.0.1:{}/v1/cluster", args.base_port);
    println!("mint more: ringcast token --sub alice --jwt-secret {secret}");
    let servers: Vec<String> =
        (0..args.nodes).map(|i| format!("ws://127.0.0.1:{}/v1/ws", args.base_port + i)).collect();
    println!(
        "demo chat (reconnects to the other nodes when its own goes): http://127.0.0.1:{}/demo#token={token}&servers={}",
        args.base_port,
        servers.join(",")
    );
    println!("Ctrl-C stops the cluster");
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(_) => return ExitCode::FAILURE,
    };
    runtime.block_on(shutdown_signal());
    stop_children(&mut children);
    ExitCode::SUCCESS
}

fn stop_children(children: &mut [std::process::Child]) {
    for child in children.iter() {
        let _ = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    }
    for child in children.iter_mut() {
        let _ = child.wait();
    }
}

fn dev_token(config: &Config) -> Option<(String, String)> {
    let KeyConfig::Hs256(secret) = &config.key else { return None };
    let token = auth::mint(&config.key, &dev_claims(vec![])).ok()?;
    Some((String::from_utf8_lossy(secret).into_owned(), token))
}

/// The claims of the printed development token: user `dev`, 24 hours.
fn dev_claims(roles: Vec<String>) -> Claims {
    let now = auth::now_secs();
    Claims {
        sub: "dev".into(),
        exp: now + 86_400,
        nbf: None,
        iat: Some(now),
        tenant: None,
        name: Some("Developer".into()),
        roles,
        groups: vec![],
    }
}

/// Resolves on SIGTERM (Kubernetes starts a graceful shutdown with it) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(terminate) => terminate,
        Err(err) => {
            tracing::error!(error = %err, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RINGCAST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
