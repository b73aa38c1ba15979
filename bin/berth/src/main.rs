//! `berth`: the docker-compatible command line. `berth daemon` runs the daemon,
//! `berth runtime ...` the OCI runtime CLI and `berth registry ...` a registry server, so one
//! binary can do every job.

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let code = match args.get(1).map(String::as_str) {
        Some("daemon") => {
            let mut rest = vec!["berthd".to_owned()];
            rest.extend(args.into_iter().skip(2));
            return berth::daemon::main(rest);
        }
        Some("runtime") => berth_runtime::oci_cli::main(args.into_iter().skip(1).collect()),
        Some("registry") => registry::main(args.into_iter().skip(1).collect()),
        _ => berth_cli::main(args),
    };
    std::process::ExitCode::from(code.clamp(0, 255) as u8)
}

/// `berth registry serve|gc`: the registry server of `berth_registry`.
mod registry {
    use std::net::SocketAddr;
    use std::path::PathBuf;

    use anyhow::Context as _;
    use berth_registry::server::{Server, ServerConfig, collect_garbage};
    use clap::{Args, Parser, Subcommand};

    /// `berth registry COMMAND`.
    #[derive(Debug, Parser)]
    #[command(
        name = "berth registry",
        bin_name = "berth registry",
        about = "Run an OCI distribution registry",
        disable_help_subcommand = true
    )]
    struct RegistryCli {
        #[command(subcommand)]
        command: RegistryCmd,
    }

    #[derive(Debug, Subcommand)]
    enum RegistryCmd {
        /// Serve the registry until SIGINT or SIGTERM
        Serve(ServeArgs),
        /// Remove blobs no manifest references, and stale uploads
        Gc(GcArgs),
    }

    #[derive(Debug, Args)]
    struct ServeArgs {
        /// Address to listen on (port 0 picks a free port)
        #[arg(long, default_value = "127.0.0.1:5000")]
        addr: SocketAddr,
        /// Storage directory (created when missing)
        #[arg(long)]
        root: PathBuf,
        /// bcrypt htpasswd file; when given, every request needs basic authentication
        #[arg(long)]
        htpasswd: Option<PathBuf>,
        /// PEM certificate chain (serve HTTPS; needs --tls-key)
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// PEM private key (needs --tls-cert)
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Log level (error, warn, info, debug, trace); RUST_LOG overrides it
        #[arg(short = 'l', long, default_value = "info")]
        log_level: String,
    }

    #[derive(Debug, Args)]
    struct GcArgs {
        /// Storage directory
        #[arg(long)]
        root: PathBuf,
    }

    /// Runs `berth registry ...` (`args[0]` is `registry`) and returns the exit status.
    pub fn main(args: Vec<String>) -> i32 {
        let cli = match RegistryCli::try_parse_from(&args) {
            Ok(c) => c,
            Err(e) => {
                let _ = e.print();
                return if e.use_stderr() { 125 } else { 0 };
            }
        };
        let result = match cli.command {
            RegistryCmd::Serve(a) => serve(a),
            RegistryCmd::Gc(a) => gc(a),
        };
        match result {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("berth registry: {e:#}");
                1
            }
        }
    }

    fn serve(a: ServeArgs) -> anyhow::Result<()> {
        let filter = match std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty()) {
            Some(env) => tracing_subscriber::EnvFilter::try_new(env),
            None => tracing_subscriber::EnvFilter::try_new(format!(
                "warn,berth_registry={0},berth={0}",
                a.log_level
            )),
        }
        .with_context(|| format!("invalid log level {:?}", a.log_level))?;
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
        let config = ServerConfig {
            addr: a.addr,
            root: a.root,
            htpasswd: a.htpasswd,
            tls_cert: a.tls_cert,
            tls_key: a.tls_key,
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        rt.block_on(async move {
            // Signal handlers first, so a signal right after "listening" is not lost.
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .context("installing the SIGTERM handler")?;
            let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
                .context("installing the SIGINT handler")?;
            let server = Server::bind(config)
                .await
                .context("starting the registry")?;
            eprintln!("listening on {}", server.local_addr());
            let shutdown = async move {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
                    _ = int.recv() => tracing::info!("SIGINT: shutting down"),
                }
            };
            server.serve(shutdown).await.context("serving")
        })?;
        rt.shutdown_timeout(std::time::Duration::from_millis(100));
        Ok(())
    }

    fn gc(a: GcArgs) -> anyhow::Result<()> {
        let report = collect_garbage(&a.root)
            .with_context(|| format!("collecting garbage in {}", a.root.display()))?;
        println!(
            "{} blobs removed ({} bytes freed), {} kept; {} links and {} stale uploads removed",
            report.blobs_removed,
            report.bytes_freed,
            report.blobs_kept,
            report.links_removed,
            report.uploads_removed
        );
        Ok(())
    }
}
