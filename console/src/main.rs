//! `trustdeck`: the operations console, its scriptable twins, and the demo topology.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use tokio::sync::mpsc;
use trustdeck_console::app::{App, Effect, Msg};
use trustdeck_console::client::{ClientTls, Update, Watcher};
use trustdeck_console::demo::{Demo, DemoOptions};
use trustdeck_console::fleetfile::{FleetFile, Target};
use trustdeck_console::status;
use trustdeck_console::termcaps::{self, CharsetFlag, TermCaps};
use trustdeck_pki::rotation::parse_duration;
use trustdeck_topology::ttl::Thresholds;

#[path = "runbook/cli.rs"]
mod runbook_cli;

/// The trustdeck operations console.
///
/// Without a subcommand, opens the console on `--fleet FILE`. Exit codes of `status`: 0
/// healthy, 1 a warning threshold crossed, 2 critical, 3 a daemon unreachable; 4 when the
/// command itself fails (bad fleet file, ...).
#[derive(Parser)]
#[command(name = "trustdeck", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    fleet: FleetArgs,
    #[command(flatten)]
    ui: UiArgs,
}

#[derive(Args, Clone)]
struct FleetArgs {
    /// Fleet file (JSON): the daemons' admin endpoints (`trustdeck demo` writes one).
    #[arg(long, env = "TRUSTDECK_FLEET", global = true)]
    fleet: Option<PathBuf>,
    /// Workload API socket to take the console's own SVID from (for https:// admin endpoints).
    #[arg(long, env = "SPIFFE_ENDPOINT_SOCKET", global = true)]
    workload_socket: Option<String>,
    /// Which SVID to use when the Workload API gives several.
    #[arg(long, global = true)]
    spiffe_id: Option<String>,
    /// A tier is a warning below this fraction of its lifetime left.
    #[arg(long, default_value_t = 0.10, global = true)]
    warn_fraction: f64,
    /// A tier is critical below this fraction of its lifetime left.
    #[arg(long, default_value_t = 0.05, global = true)]
    crit_fraction: f64,
    /// Do not flag CA keys outside an HSM (by default: root CA critical, intermediate warning).
    #[arg(long, global = true)]
    no_key_policy: bool,
}

#[derive(Args, Clone)]
struct UiArgs {
    /// No colours (also when NO_COLOR is set).
    #[arg(long)]
    no_color: bool,
    /// Mouse support (scroll, click to select).
    #[arg(long)]
    mouse: bool,
    /// Operator mode: runbooks can act (the console starts read-only otherwise; `:operator`
    /// asks before enabling it).
    #[arg(long)]
    operator: bool,
    /// ASCII only: no box drawing or symbols (the default when the locale is not UTF-8 or
    /// TERM is a limited terminal such as vt100, linux or dumb).
    #[arg(long, global = true, conflicts_with = "unicode")]
    ascii: bool,
    /// Unicode symbols even when the locale or TERM suggest ASCII.
    #[arg(long, global = true)]
    unicode: bool,
    /// Log file (the console never logs to the screen).
    #[arg(long)]
    log_file: Option<PathBuf>,
    /// Load runbooks from this directory instead of the shipped ones.
    #[arg(long)]
    runbooks: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Output {
    Json,
    Table,
}

#[derive(Subcommand)]
enum Command {
    /// Print the fleet's state once; the exit code says how healthy it is.
    Status {
        /// Output format.
        #[arg(long, short, value_enum, default_value = "table")]
        output: Output,
        /// How long to wait for every daemon's snapshot.
        #[arg(long, default_value = "5s", value_parser = parse_secs)]
        timeout: Duration,
    },
    /// Print every event and health change as one JSON object per line, until interrupted.
    Watch {
        /// Output format (JSON lines).
        #[arg(long, short, value_enum, default_value = "json")]
        output: Output,
    },
    /// Start the demo topology (upstream, downstream segments, agents) and open the console.
    Demo {
        /// Directory for sockets, data, logs and demo.json (default: a new one under /tmp).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Run headless until SIGINT/SIGTERM (write DIR/demo.json and wait).
        #[arg(long)]
        no_console: bool,
        /// Segments, one downstream server each.
        #[arg(long, value_delimiter = ',', default_value = "gcp,dmz")]
        segments: Vec<String>,
        /// Workload agents per segment.
        #[arg(long, default_value_t = 1)]
        workload_agents: usize,
        /// Workload X509-SVID lifetime.
        #[arg(long, default_value = "5m", value_parser = parse_duration)]
        svid_ttl: chrono::Duration,
        /// Intermediate CA lifetime.
        #[arg(long, default_value = "1h", value_parser = parse_duration)]
        intermediate_ttl: chrono::Duration,
        /// Leave out the federated partner and the isolated trust domains.
        #[arg(long)]
        no_partners: bool,
    },
    /// Guided runbooks: list, show, plan, run, resume, abort (exit 0 when every step
    /// verified, 1 when it stopped, 2 for a usage error before any change).
    Runbook {
        #[command(subcommand)]
        cmd: runbook_cli::RunbookCmd,
        #[command(flatten)]
        args: runbook_cli::RunbookArgs,
    },
}

/// Why a `--timeout` value is refused.
#[derive(Debug, thiserror::Error)]
enum SecsError {
    #[error("{0:?} is not a duration (e.g. 5s, 500ms, 1m)")]
    NotADuration(String),
    #[error("{0:?} must be positive")]
    NotPositive(String),
}

fn parse_secs(s: &str) -> Result<Duration, SecsError> {
    let t = s.trim();
    let (num, mult) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else {
        (t, 1.0)
    };
    let v: f64 = num
        .parse()
        .map_err(|_| SecsError::NotADuration(s.to_string()))?;
    if v.is_nan() || v <= 0.0 {
        return Err(SecsError::NotPositive(s.to_string()));
    }
    Ok(Duration::from_secs_f64(v * mult))
}

fn thresholds(f: &FleetArgs) -> Result<Thresholds> {
    let ok = |x: f64| (0.0..=1.0).contains(&x);
    if !ok(f.warn_fraction) || !ok(f.crit_fraction) {
        bail!("--warn-fraction and --crit-fraction must be between 0 and 1");
    }
    Ok(Thresholds {
        warn_fraction: f.warn_fraction,
        crit_fraction: f.crit_fraction,
        key_policy: !f.no_key_policy,
    })
}

fn load_fleet(f: &FleetArgs) -> Result<(FleetFile, Vec<Target>)> {
    let path = f
        .fleet
        .as_ref()
        .context("--fleet FILE is required (or run `trustdeck demo`)")?;
    let file = FleetFile::load(path)?;
    let targets = file.targets()?;
    Ok((file, targets))
}

async fn client_tls(f: &FleetArgs, targets: &[Target]) -> Result<Option<Arc<ClientTls>>> {
    let needs = targets.iter().any(|t| {
        matches!(
            t.endpoint,
            trustdeck_console::fleetfile::Endpoint::Tls { .. }
        )
    });
    if !needs {
        return Ok(None);
    }
    let sock = f.workload_socket.as_ref().context(
        "the fleet has https:// admin endpoints: give the console an SVID with --workload-socket or SPIFFE_ENDPOINT_SOCKET",
    )?;
    let sock = sock.strip_prefix("unix://").unwrap_or(sock);
    Ok(Some(Arc::new(
        ClientTls::from_workload_api(Path::new(sock), f.spiffe_id.as_deref()).await?,
    )))
}

fn default_log_file() -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("trustdeck").join("console.log")
}

/// Logs to a file (the console owns the screen); returns its path.
fn log_to_file(path: &Path) -> Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("create {}", d.display()))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("open log file {}", path.display()))?;
    let filter = tracing_subscriber::EnvFilter::try_from_env("TRUSTDECK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .try_init();
    Ok(())
}

/// What the terminal can show, from the environment and the flags.
fn term_caps(ui: &UiArgs) -> TermCaps {
    let flag = if ui.ascii {
        CharsetFlag::Ascii
    } else if ui.unicode {
        CharsetFlag::Unicode
    } else {
        CharsetFlag::Auto
    };
    let env = |k: &str| std::env::var(k).ok();
    termcaps::detect(&env, flag, ui.no_color)
}

/// Runs the interactive console until the user quits.
async fn console(
    targets: Vec<Target>,
    tls: Option<Arc<ClientTls>>,
    th: Thresholds,
    ui: &UiArgs,
) -> Result<()> {
    let runbooks = match &ui.runbooks {
        None => None,
        Some(d) => Some(trustdeck_runbook::load_dir(d).map_err(|errs| {
            let errs: Vec<String> = errs.iter().map(ToString::to_string).collect();
            anyhow::anyhow!("runbooks in {}:\n{}", d.display(), errs.join("\n"))
        })?),
    };
    let fleet = status::fleet_for(&targets);
    let (utx, mut urx) = mpsc::unbounded_channel::<Update>();
    let rb_io = trustdeck_console::runbook::io::RunbookIo {
        targets: trustdeck_console::fleetfile::own(&targets),
        tls: tls.clone(),
        session: trustdeck_console::runbook::io::new_session(),
    };
    let watcher = Watcher::start(&targets, tls, utx)?;
    let (mtx, mrx) = mpsc::unbounded_channel::<Msg>();
    let (etx, mut erx) = mpsc::unbounded_channel::<Effect>();
    let fwd = mtx.clone();
    let forward = tokio::spawn(async move {
        while let Some(u) = urx.recv().await {
            let m = match u {
                Update::Stream(daemon, msg) => Msg::Stream { daemon, msg },
                Update::Conn(daemon, conn) => Msg::Conn { daemon, conn },
                Update::Detail(node_id, result) => Msg::Detail { node_id, result },
            };
            if fwd.send(m).is_err() {
                break;
            }
        }
    });
    let effects = tokio::spawn(async move {
        while let Some(e) = erx.recv().await {
            match e {
                Effect::Resubscribe(d) => watcher.resubscribe(d),
                Effect::FetchDetail { daemon, node_id } => watcher.fetch_detail(daemon, node_id),
                _ => {}
            }
        }
        watcher.stop().await;
    });
    let mut app = App::new(fleet, th);
    app.mouse = ui.mouse;
    app.read_only = !ui.operator;
    if let Some(set) = runbooks {
        app.runbooks = trustdeck_console::app::runbooks::Runbooks::with(set);
    }
    let caps = term_caps(ui);
    app.charset = caps.charset;
    let clock = trustdeck_process::clock::system();
    let r = trustdeck_console::term::run(app, mrx, etx, caps.colors, clock, Some(rb_io)).await;
    forward.abort();
    let _ = effects.await;
    drop(mtx);
    r
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let th = thresholds(&cli.fleet)?;
    match cli.command {
        Some(Command::Runbook { cmd, args }) => {
            trustdeck_process::init_logging();
            let targets = load_fleet(&cli.fleet).map(|(_, t)| t);
            let (targets, tls) = match targets {
                Ok(t) => match client_tls(&cli.fleet, &t).await {
                    Ok(tls) => (Ok(t), tls),
                    Err(e) => (Err(e), None),
                },
                Err(e) => (Err(e), None),
            };
            let fleet = runbook_cli::Fleet {
                targets,
                tls,
                thresholds: th,
            };
            Ok(runbook_cli::main(cmd, args, fleet).await)
        }
        None => {
            let (_, targets) = load_fleet(&cli.fleet)?;
            log_to_file(&cli.ui.log_file.clone().unwrap_or_else(default_log_file))?;
            let tls = client_tls(&cli.fleet, &targets).await?;
            console(targets, tls, th, &cli.ui).await?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Status { output, timeout }) => {
            trustdeck_process::init_logging();
            let (_, targets) = load_fleet(&cli.fleet)?;
            let tls = client_tls(&cli.fleet, &targets).await?;
            let clock = trustdeck_process::clock::system();
            let fleet = status::collect(&targets, tls, timeout, clock.as_ref()).await?;
            let now = clock.now();
            let report = fleet.status_report(now, &th);
            let text = match output {
                Output::Json => serde_json::to_string_pretty(&report)?,
                Output::Table => {
                    let g = term_caps(&cli.ui).charset.glyphs();
                    status::table_with(&fleet, now, &th, g)
                }
            };
            status::out(text.trim_end());
            Ok(ExitCode::from(u8::try_from(report.exit_code).unwrap_or(3)))
        }
        Some(Command::Watch { output }) => {
            if output != Output::Json {
                bail!("watch prints JSON lines only (--output json)");
            }
            trustdeck_process::init_logging();
            let (_, targets) = load_fleet(&cli.fleet)?;
            let tls = client_tls(&cli.fleet, &targets).await?;
            let clock = trustdeck_process::clock::system();
            status::watch(&targets, tls, th, clock.as_ref()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Demo {
            dir,
            no_console,
            segments,
            workload_agents,
            svid_ttl,
            intermediate_ttl,
            no_partners,
        }) => {
            let dir = match dir {
                Some(d) => std::path::absolute(&d).context("demo directory")?,
                None => tempfile_dir()?,
            };
            if no_console {
                trustdeck_process::init_logging();
            } else {
                log_to_file(
                    &cli.ui
                        .log_file
                        .clone()
                        .unwrap_or_else(|| dir.join("console.log")),
                )?;
                eprintln!(
                    "trustdeck demo: starting the topology in {} ...",
                    dir.display()
                );
            }
            let opts = DemoOptions {
                dir: dir.clone(),
                segments,
                workload_agents,
                svid_ttl,
                intermediate_ttl,
                partners: !no_partners,
            };
            let demo = tokio::select! {
                d = Demo::start(&opts) => d,
                _ = trustdeck_process::terminated() => bail!("interrupted while starting"),
            };
            let demo = match demo {
                Ok(d) => d,
                Err(e) => bail!("demo: {e}"),
            };
            tracing::info!(fleet = %demo.fleet_path.display(), "demo topology running");
            let result = if no_console {
                status::out(&demo.fleet_path.display().to_string());
                let _ = trustdeck_process::terminated().await;
                Ok(())
            } else {
                let targets = demo.fleet.targets()?;
                console(targets, None, th, &cli.ui).await
            };
            demo.stop().await;
            if !no_console {
                eprintln!(
                    "trustdeck demo: every daemon stopped; logs and data are in {}",
                    dir.display()
                );
            }
            result.map(|()| ExitCode::SUCCESS)
        }
    }
}

fn tempfile_dir() -> Result<PathBuf> {
    // Short, so socket paths stay under the 108-byte limit.
    for _ in 0..100 {
        let n: u32 = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let p = std::env::temp_dir().join(format!("trustdeck-demo-{:08x}", n ^ std::process::id()));
        match std::fs::create_dir(&p) {
            Ok(()) => return Ok(p),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("create {}", p.display())),
        }
    }
    bail!(
        "could not create a demo directory under {}",
        std::env::temp_dir().display()
    )
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("trustdeck: {e:#}");
            ExitCode::from(4)
        }
    }
}
