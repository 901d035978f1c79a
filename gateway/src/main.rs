//! The `emla` command line: parses arguments and calls the library.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use emla::config::Config;
use emla::policy;
use emla::store::{ChainCheck, Store, StoreError};
use emla::verify::{self, Envelope};
use emla::EvalTime;

/// Exit codes (`docs/contracts.md`): 0 accepted / fine, 1 rejected / broken, 2 usage or configuration.
const EXIT_REJECTED: u8 = 1;
const EXIT_CONFIG: u8 = 2;

#[derive(Parser)]
#[command(
    name = "emla",
    version,
    about = "Secure S/MIME mail gateway for mutual legal assistance"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Judge one message as the gateway would: accept or reject with a reason code.
    Verify {
        /// The raw message (RFC 5322), or `-` for standard input.
        message: PathBuf,
        /// Policy directory.
        #[arg(long, default_value = "policy")]
        policy: PathBuf,
        /// Envelope sender (MAIL FROM).
        #[arg(long = "mail-from")]
        mail_from: Option<String>,
        /// Envelope recipient (RCPT TO); repeat for several.
        #[arg(long = "rcpt")]
        rcpt: Vec<String>,
        /// Judge as of this instant (RFC 3339) instead of now.
        #[arg(long)]
        at: Option<String>,
        /// Also use the CRLs and OCSP answers the gateway of this
        /// configuration has downloaded (nothing is fetched).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Policy administration.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Run the gateway: SMTP intake on the configured addresses.
    Serve {
        /// Configuration file; without it, the embedded default (127.0.0.1:2525,
        /// SQLite under data/, policy/).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Show the whole system on a demo PKI: three authorities, the gateway,
    /// a counterpart mailbox, real signed requests, forgeries, receipts.
    Demo {
        /// Directory for the demo's PKI, policy, database and mailbox
        /// (wiped and made again on every run).
        #[arg(long, default_value = "data/demo")]
        dir: PathBuf,
        /// Where the demo gateway listens.
        #[arg(long, default_value = "127.0.0.1:2525")]
        listen: std::net::SocketAddr,
    },
    /// The relay queue: list, show, retry, cancel.
    Queue {
        /// Configuration file naming the database (default: the embedded default).
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: emla::relay::admin::QueueCommand,
    },
    /// Audit log tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// The data keys of bodies encrypted at rest (`[storage]`): list, rotate.
    Keys {
        /// Configuration file naming the database and the key-encryption key.
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Certificate revocation lists: what is held and downloaded, download now.
    Crl {
        /// Configuration file (default: the embedded default).
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: emla::revocation::cli::CrlCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// The data keys: id, when made, which one seals new bodies.
    List,
    /// Add a data key that seals new bodies from now on; bodies sealed
    /// before stay readable under their own keys.
    Rotate,
    /// Wrap every data key under a new key-encryption key (the configured
    /// one must unwrap them); then configure the new one everywhere.
    Rewrap {
        /// The new KEK's file (32 bytes, 64 hex digits or base64).
        #[arg(long = "new-kek-file", conflicts_with = "new_kek_env")]
        new_kek_file: Option<PathBuf>,
        /// The environment variable holding the new KEK (hex or base64).
        #[arg(long = "new-kek-env")]
        new_kek_env: Option<String>,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Walk the hash chain; report the first edited, deleted or reordered record.
    Verify {
        /// Configuration file naming the database (default: the embedded default).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Also check this signed checkpoint (`checkpoint-<seq>.json`, its
        /// `.p7s` next to it): signature, and that the database's record
        /// seq has exactly its hash. Repeat for several.
        #[arg(long)]
        checkpoint: Vec<PathBuf>,
        /// Check every `checkpoint-*.json` in this directory.
        #[arg(long)]
        checkpoints: Option<PathBuf>,
        /// CA certificates (PEM) the checkpoint signer must chain to
        /// (default: the trust anchors of every authority of the policy).
        #[arg(long)]
        ca: Option<PathBuf>,
        /// Check this receipt (the signed message as the sender got it)
        /// against the log: the gateway's signature, the audit record and
        /// the checkpoint it names (`docs/evidence-vocabulary.md`).
        #[arg(long)]
        receipt: Option<PathBuf>,
        /// Compare checkpoints that have no `.p7s` too.
        #[arg(long = "allow-unsigned")]
        allow_unsigned: bool,
    },
    /// Write a signed checkpoint of the chain head now (to `[audit]
    /// checkpoint_dir`), and record it as an `audit.checkpoint` event.
    Checkpoint {
        /// Configuration file (database, policy with the signing identity,
        /// `[audit]`).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Write into this directory instead of `[audit] checkpoint_dir`.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Apply `[retention]` now: remove old message bodies (their hash and a
    /// `retention.pruned` record stay) and audit records below the latest
    /// signed checkpoint (the chain then starts from an anchor).
    Prune {
        /// Configuration file (database, `[retention]`).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Only report what would be pruned.
        #[arg(long = "dry-run")]
        dry_run: bool,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write an evidence bundle for one message into a new directory: the
    /// original bytes, the verification report, certificates and CRLs, the
    /// audit records with their chain proof to a signed checkpoint, and a
    /// README.txt saying how to check it all with openssl and sha256sum.
    Export(emla::audit::export::ExportArgs),
    /// Find messages by time, sender, recipient, authority, signer, reason,
    /// verdict, delivery status, Message-ID, emla id or case reference.
    Search(Box<emla::audit::cli::SearchArgs>),
    /// One message's history as a timeline.
    Show(emla::audit::cli::ShowArgs),
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validate the policy files; print each problem as `file:line:col: message`.
    Check {
        /// Policy directory.
        #[arg(default_value = "policy")]
        dir: PathBuf,
        /// Judge certificate and CRL validity as of this instant (RFC 3339).
        #[arg(long)]
        at: Option<String>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// What changes from one policy directory to another: settings,
    /// authorities (domains, anchors by fingerprint, CRL sources, next hop)
    /// and routes. Exit 0 when nothing changes, 1 when something does.
    Diff {
        /// The policy in force (or any older one).
        old: PathBuf,
        /// The candidate policy.
        new: PathBuf,
        /// Load both as of this instant (RFC 3339; default now).
        #[arg(long)]
        at: Option<String>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Judge the recorded traffic again under a candidate policy, as of
    /// each message's reception, and list every message whose verdict,
    /// reason, route, next hop or lane would change. Exit 0 when nothing
    /// changes, 1 when something does. Reads only the database and bodies.
    Replay {
        /// The candidate policy directory.
        candidate: PathBuf,
        /// Configuration file of the gateway whose traffic is replayed.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The last DURATION of traffic (90s, 30m, 24h, 7d, 2w).
        #[arg(long)]
        since: Option<String>,
        /// Traffic received at or after this instant (RFC 3339 or a date).
        #[arg(long)]
        from: Option<String>,
        /// Traffic received before this instant.
        #[arg(long)]
        until: Option<String>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// An archived policy version: every version the gateway put in force,
    /// with the files it was built from, checked against its version hash.
    /// Without VERSION, lists them.
    Show {
        /// The version, or its first hex digits.
        version: Option<String>,
        /// Configuration file naming the database (default: the embedded default).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print this file of the version (its name as listed) instead.
        #[arg(long, conflicts_with = "extract")]
        file: Option<String>,
        /// Write the version's files under this directory (policy in
        /// DIR/policy, the files it names beside it).
        #[arg(long)]
        extract: Option<PathBuf>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check the policy, then make the running gateway load it (it keeps the
    /// old one if the new one has problems).
    Reload {
        /// Configuration file of the running gateway (default: the embedded default).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    // What emla writes (database, bodies, checkpoints, bundles) is MLA
    // material: private to its user whatever the umask.
    emla::fsutil::private_files();
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Verify {
            message,
            policy,
            mail_from,
            rcpt,
            at,
            config,
            json,
        } => run_verify(message, policy, mail_from, rcpt, at, config, json),
        Command::Policy {
            command: PolicyCommand::Check { dir, at, json },
        } => run_policy_check(dir, at, json),
        Command::Policy {
            command: PolicyCommand::Diff { old, new, at, json },
        } => run_policy_diff(&old, &new, at, json),
        Command::Policy {
            command:
                PolicyCommand::Replay {
                    candidate,
                    config,
                    since,
                    from,
                    until,
                    json,
                },
        } => run_policy_replay(&candidate, config, [since, from, until], json),
        Command::Policy {
            command:
                PolicyCommand::Show {
                    version,
                    config,
                    file,
                    extract,
                    json,
                },
        } => run_policy_show(
            config,
            emla::audit::policies::ShowArgs {
                version,
                file,
                extract,
                json,
            },
        ),
        Command::Policy {
            command: PolicyCommand::Reload { config },
        } => run_policy_reload(config),
        Command::Serve { config } => run_serve(config),
        Command::Demo { dir, listen } => run_demo(&dir, listen),
        Command::Audit {
            command:
                AuditCommand::Verify {
                    config,
                    json,
                    ca,
                    receipt: Some(receipt),
                    ..
                },
        } => run_audit_receipt(config, json, &receipt, ca),
        Command::Audit {
            command:
                AuditCommand::Verify {
                    config,
                    json,
                    checkpoint,
                    checkpoints,
                    ca,
                    allow_unsigned,
                    receipt: None,
                },
        } => run_audit_verify(
            config,
            json,
            CheckpointArgs {
                files: checkpoint,
                dir: checkpoints,
                ca,
                allow_unsigned,
            },
        ),
        Command::Audit {
            command: AuditCommand::Checkpoint { config, dir, json },
        } => run_audit_checkpoint(config, dir, json),
        Command::Audit {
            command:
                AuditCommand::Prune {
                    config,
                    dry_run,
                    json,
                },
        } => run_audit_prune(config, dry_run, json),
        Command::Audit {
            command: AuditCommand::Export(args),
        } => run_audit_export(&args),
        Command::Queue { config, command } => run_queue(config, &command),
        Command::Crl { config, command } => run_crl(config, &command),
        Command::Keys {
            config,
            json,
            command,
        } => run_keys(config, json, &command),
        Command::Audit {
            command: AuditCommand::Search(args),
        } => run_audit_search(&args),
        Command::Audit {
            command: AuditCommand::Show(args),
        } => run_audit_show(&args),
    };
    outcome.unwrap_or_else(|f| {
        eprintln!("emla: {}", f.message);
        ExitCode::from(f.code)
    })
}

fn load_config(path: Option<PathBuf>) -> Result<Config, Failure> {
    match path {
        None => Ok(Config::embedded()),
        Some(p) => Config::load(&p).map_err(Failure::config),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::config(format!("cannot start the runtime: {e}")))
}

async fn open_store(config: &Config) -> Result<Store, Failure> {
    if let Err(e) = emla::fsutil::private_dir(&config.data_dir) {
        return Err(Failure::config(format!(
            "cannot create the data directory {}: {e}",
            config.data_dir.display()
        )));
    }
    Store::open_config(config).await.map_err(Failure::store)
}

fn run_serve(config: Option<PathBuf>) -> Outcome {
    let config = load_config(config)?;
    init_logging_as("info", config.log_format);
    let policy = load_policy(&config.policy_dir, EvalTime::now())?;
    let tls = match &config.tls {
        Some(files) => Some(emla::tls::acceptor(files).map_err(Failure::config)?),
        None => None,
    };
    let rt = runtime()?;
    rt.block_on(async {
        let store = open_store(&config).await?;
        emla::server::run(config, store, tls, policy)
            .await
            .map_err(Failure::config)?;
        Ok(ExitCode::SUCCESS)
    })
}

/// Why a command failed: what to say on stderr and the exit code
/// (`docs/contracts.md`). Every command returns one; `main` prints it.
struct Failure {
    message: String,
    code: u8,
}

impl Failure {
    /// A usage or configuration error (exit 2).
    fn config(e: impl std::fmt::Display) -> Failure {
        Failure::with_code(e, EXIT_CONFIG)
    }

    /// The store failed (exit code as [`StoreError::exit_code`] says).
    fn store(e: StoreError) -> Failure {
        Failure::with_code(&e, e.exit_code())
    }

    fn with_code(e: impl std::fmt::Display, code: u8) -> Failure {
        Failure {
            message: e.to_string(),
            code,
        }
    }
}

/// What a command ends with.
type Outcome = Result<ExitCode, Failure>;

fn init_logging(default: &str) {
    init_logging_as(default, emla::config::LogFormat::Text);
}

/// `log_format = "json"`: one object per line, the event's fields at the
/// top level (`emla_id`, `reason`, `authority`, `next_hop`, …) for a log
/// shipper to index.
fn init_logging_as(default: &str, format: emla::config::LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EMLA_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr);
    match format {
        emla::config::LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        emla::config::LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn run_demo(dir: &std::path::Path, listen: std::net::SocketAddr) -> Outcome {
    // The demo's story goes to stdout; only warnings to stderr.
    init_logging("warn");
    let rt = runtime()?;
    rt.block_on(emla::demo::run(dir, listen))
        .map_err(|e| Failure::config(format!("demo: {e}")))?;
    Ok(ExitCode::SUCCESS)
}

fn run_policy_reload(config: Option<PathBuf>) -> Outcome {
    let config = load_config(config)?;
    if let Err(diags) = policy::load(&config.policy_dir, EvalTime::now()) {
        for d in &diags {
            println!("{d}");
        }
        eprintln!(
            "{}: {} problem(s); the running gateway keeps its policy",
            config.policy_dir.display(),
            diags.len()
        );
        return Ok(ExitCode::from(EXIT_REJECTED));
    }
    let rt = runtime()?;
    let reply = rt
        .block_on(emla::control::request(
            &config.data_dir,
            emla::control::RELOAD,
        ))
        .map_err(Failure::config)?;
    if reply["ok"] == true {
        println!(
            "reloaded: policy version {}",
            reply["version"].as_str().unwrap_or("?")
        );
        Ok(ExitCode::SUCCESS)
    } else {
        for p in reply["problems"].as_array().into_iter().flatten() {
            println!("{}", p.as_str().unwrap_or_default());
        }
        eprintln!("emla: the gateway kept its policy");
        Ok(ExitCode::from(EXIT_REJECTED))
    }
}

/// The checkpoint options of `emla audit verify`.
struct CheckpointArgs {
    files: Vec<PathBuf>,
    dir: Option<PathBuf>,
    ca: Option<PathBuf>,
    allow_unsigned: bool,
}

/// CA certificates for checkpoint signatures: `--ca`, else every trust
/// anchor of the configuration's policy.
fn checkpoint_ca(
    ca: Option<&std::path::Path>,
    config: &Config,
) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, Failure> {
    match ca {
        Some(p) => {
            emla::audit::checkpoint::read_ca(p).map_err(|e| Failure::config(format!("--ca: {e}")))
        }
        None => {
            let policy = load_policy(&config.policy_dir, EvalTime::now())?;
            Ok(policy
                .authorities
                .iter()
                .flat_map(|a| a.anchor_certs.iter().cloned())
                .collect())
        }
    }
}

fn run_audit_verify(config: Option<PathBuf>, json: bool, cps: CheckpointArgs) -> Outcome {
    let config = load_config(config)?;
    let mut files = cps.files.clone();
    if let Some(dir) = &cps.dir {
        let listed = emla::audit::checkpoint::list(dir)
            .map_err(|e| Failure::config(format!("--checkpoints: {e}")))?;
        if listed.is_empty() {
            return Err(Failure::config(format!(
                "--checkpoints: no checkpoint-*.json in {}",
                dir.display()
            )));
        }
        files.extend(listed.into_iter().map(|(_, p)| p));
    }
    let ca = if files.is_empty() {
        Vec::new()
    } else {
        checkpoint_ca(cps.ca.as_deref(), &config)?
    };
    let rt = runtime()?;
    rt.block_on(async {
        let store = open_store(&config).await?;
        let check = store.verify_chain().await.map_err(Failure::store)?;
        let mut checks = Vec::new();
        for f in &files {
            checks.push(
                emla::audit::checkpoint::check(&store, f, &ca, cps.allow_unsigned)
                    .await
                    .map_err(Failure::store)?,
            );
        }
        let anchor = store.chain_anchor().await.map_err(Failure::store)?;
        let cp_failed = checks.iter().any(|c| c.outcome.fails());
        let mut v = match &check {
            ChainCheck::Intact { records, head } => {
                serde_json::json!({"intact": true, "records": records, "head": head})
            }
            ChainCheck::Broken { seq, problem } => {
                serde_json::json!({"intact": false, "seq": seq, "problem": problem})
            }
        };
        if let Some(a) = &anchor {
            v["anchor"] = serde_json::json!(a);
        }
        if !files.is_empty() {
            v["checkpoints"] = checks.iter().map(|c| c.json()).collect();
            v["checkpoints_ok"] = (!cp_failed).into();
        }
        if json {
            println!("{v}");
        } else {
            match &check {
                ChainCheck::Intact { records, head } => {
                    let from = anchor
                        .as_ref()
                        .map(|a| format!(" (from the pruning anchor at record {})", a.seq))
                        .unwrap_or_default();
                    println!("audit chain intact: {records} records{from}, head {head}")
                }
                ChainCheck::Broken { seq, problem } => {
                    println!("audit chain BROKEN at record {seq}: {problem}")
                }
            }
            for c in &checks {
                println!("{}", c.text());
            }
        }
        Ok(
            if matches!(check, ChainCheck::Intact { .. }) && !cp_failed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_REJECTED)
            },
        )
    })
}

/// `emla audit verify --receipt FILE`.
fn run_audit_receipt(
    config: Option<PathBuf>,
    json: bool,
    file: &std::path::Path,
    ca: Option<PathBuf>,
) -> Outcome {
    let config = load_config(config)?;
    let raw = std::fs::read(file)
        .map_err(|e| Failure::config(format!("--receipt {}: {e}", file.display())))?;
    let ca = checkpoint_ca(ca.as_deref(), &config)?;
    let policy = load_policy(&config.policy_dir, EvalTime::now())?;
    let identity = policy
        .gateway
        .signing
        .as_ref()
        .map(|s| s.certificate_der().to_vec());
    let rt = runtime()?;
    rt.block_on(async {
        let store = open_store(&config).await?;
        use emla::audit::receipt::{check, Error};
        match check(&store, &raw, &ca, identity.as_deref()).await {
            Ok(c) => {
                if json {
                    println!("{}", c.json());
                } else {
                    println!("{}", c.text());
                }
                Ok(if c.problem.is_none() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(EXIT_REJECTED)
                })
            }
            Err(Error::Receipt(p)) => {
                if json {
                    println!("{}", serde_json::json!({"ok": false, "problem": p}));
                } else {
                    println!("receipt does NOT match the log: {p}");
                }
                Ok(ExitCode::from(EXIT_REJECTED))
            }
            Err(Error::Store(e)) => Err(Failure::store(e)),
        }
    })
}

fn run_audit_checkpoint(config: Option<PathBuf>, dir: Option<PathBuf>, json: bool) -> Outcome {
    let config = load_config(config)?;
    let policy = load_policy(&config.policy_dir, EvalTime::now())?;
    let dir = dir.unwrap_or_else(|| config.audit.checkpoint_dir.clone());
    let rt = runtime()?;
    rt.block_on(async {
        let store = open_store(&config).await?;
        let tsa = emla::smime::tsa::Tsa::configured(&config.evidence).map_err(Failure::config)?;
        let w = emla::audit::checkpoint::write(&store, &policy, &dir, &config.audit, tsa.as_ref())
            .await
            .map_err(Failure::config)?;
        if json {
            println!(
                "{}",
                serde_json::json!({
                    "seq": w.checkpoint.seq,
                    "hash": w.checkpoint.hash,
                    "at": w.checkpoint.at,
                    "json": w.json.display().to_string(),
                    "p7s": w.p7s.as_ref().map(|p| p.display().to_string()),
                })
            );
        } else {
            println!(
                "checkpoint seq {} hash {} written to {}{}",
                w.checkpoint.seq,
                w.checkpoint.hash,
                w.json.display(),
                if w.p7s.is_some() {
                    " (+ .p7s)"
                } else {
                    " UNSIGNED"
                }
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn run_audit_prune(config: Option<PathBuf>, dry_run: bool, json: bool) -> Outcome {
    let config = load_config(config)?;
    if config.retention.bodies_days.is_none() && config.retention.audit_days.is_none() {
        return Err(Failure::config(
            "[retention] sets neither bodies_days nor audit_days: nothing to prune",
        ));
    }
    let rt = runtime()?;
    rt.block_on(async {
        let store = open_store(&config).await?;
        let job = emla::store::ExclusiveJob::Retention;
        let Some(lock) = store.exclusive(job).await.map_err(Failure::config)? else {
            return Err(Failure::config(
                "another gateway instance is pruning now (retention job lock held); try again later",
            ));
        };
        let report = emla::audit::retention::prune(
            &store,
            &config.retention,
            emla::store::now_ms(),
            dry_run,
        )
        .await;
        lock.release().await;
        let report = report.map_err(Failure::config)?;
        if json {
            println!("{}", serde_json::json!(report));
        } else {
            print!("{}", report.text());
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn run_audit_export(args: &emla::audit::export::ExportArgs) -> Outcome {
    let config = load_config(args.config.clone())?;
    let policy = load_policy(&config.policy_dir, EvalTime::now())?;
    let rt = runtime()?;
    rt.block_on(async {
        let store = open_store(&config).await?;
        audit_output(emla::audit::export::export(&store, &policy, &config, args).await)
    })
}

fn run_audit_search(args: &emla::audit::cli::SearchArgs) -> Outcome {
    let config = load_config(args.config.clone())?;
    // Only an authority or country filter needs the policy (to name its domains).
    let policy = if args.needs_policy() {
        let dir = args.policy.clone().unwrap_or(config.policy_dir.clone());
        Some(load_policy(&dir, EvalTime::now())?)
    } else {
        None
    };
    let rt = runtime()?;
    rt.block_on(async {
        let store = open_store(&config).await?;
        audit_output(emla::audit::cli::search(&store, policy.as_ref(), args).await)
    })
}

fn run_audit_show(args: &emla::audit::cli::ShowArgs) -> Outcome {
    let config = load_config(args.config.clone())?;
    let rt = runtime()?;
    rt.block_on(async {
        let store = open_store(&config).await?;
        audit_output(emla::audit::cli::show(&store, args).await)
    })
}

fn run_queue(config: Option<PathBuf>, command: &emla::relay::admin::QueueCommand) -> Outcome {
    let config = load_config(config)?;
    let rt = runtime()?;
    rt.block_on(async {
        let store = open_store(&config).await?;
        printed(
            emla::relay::admin::run(&store, command)
                .await
                .map_err(|e| (e.to_string(), e.exit_code())),
        )
    })
}

fn run_crl(config: Option<PathBuf>, command: &emla::revocation::cli::CrlCommand) -> Outcome {
    let config = load_config(config)?;
    let policy = load_policy(&config.policy_dir, EvalTime::now())?;
    let rt = runtime()?;
    let (text, code) = rt
        .block_on(emla::revocation::cli::run(&config, &policy, command))
        .map_err(Failure::config)?;
    print!("{text}");
    Ok(ExitCode::from(code))
}

fn run_keys(config: Option<PathBuf>, json: bool, command: &KeysCommand) -> Outcome {
    let config = load_config(config)?;
    let rt = runtime()?;
    rt.block_on(async {
        let store = open_store(&config).await?;
        let text = match command {
            KeysCommand::Rotate => {
                let id = store.rotate_data_key().await.map_err(Failure::store)?;
                if json {
                    format!("{}\n", serde_json::json!({ "id": id }))
                } else {
                    format!(
                        "data key {id} added: it seals new bodies (a running gateway takes it \
                         within {} s); bodies sealed before stay readable\n",
                        emla::store::keys::REFRESH.as_secs()
                    )
                }
            }
            KeysCommand::Rewrap {
                new_kek_file,
                new_kek_env,
            } => {
                use emla::config::KekSource;
                let source = match (new_kek_file, new_kek_env) {
                    (Some(f), None) => KekSource::File(f.clone()),
                    (None, Some(v)) => KekSource::Env(v.clone()),
                    _ => return Err(Failure::config("give --new-kek-file or --new-kek-env")),
                };
                let kek = emla::store::keys::load_kek(&source).map_err(Failure::config)?;
                let n = store.rewrap_data_keys(&kek).await.map_err(Failure::store)?;
                if json {
                    format!("{}\n", serde_json::json!({ "rewrapped": n }))
                } else {
                    format!(
                        "{n} data key(s) wrapped under the new key-encryption key ({source}): \
                         configure it in [storage] and restart every instance, the old one \
                         no longer opens the store\n"
                    )
                }
            }
            KeysCommand::List => {
                let keys = store.data_keys().await.map_err(Failure::store)?;
                if json {
                    format!("{}\n", serde_json::to_string(&keys).unwrap_or_default())
                } else if keys.is_empty() {
                    "no data keys: bodies are stored in clear ([storage] encrypt_bodies)\n".into()
                } else {
                    let mut t = String::from("ID  CREATED\n");
                    for k in &keys {
                        let mark = if k.current { "  current" } else { "" };
                        let at = emla::text::time_rfc3339(k.created_at);
                        t += &format!("{:<3} {at}{mark}\n", k.id);
                    }
                    t
                }
            }
        };
        print!("{text}");
        Ok(ExitCode::SUCCESS)
    })
}

fn audit_output(result: Result<String, emla::audit::AuditError>) -> Outcome {
    printed(result.map_err(|e| (e.to_string(), e.exit_code())))
}

/// Prints a command's text and exits 0, or gives its error and exit code.
fn printed(result: Result<String, (String, u8)>) -> Outcome {
    let text = result.map_err(|(e, code)| Failure::with_code(e, code))?;
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

fn eval_time(at: Option<String>) -> Result<EvalTime, Failure> {
    match at {
        None => Ok(EvalTime::now()),
        Some(s) => EvalTime::parse_rfc3339(&s).map_err(|e| Failure::config(format!("--at: {e}"))),
    }
}

fn load_policy(dir: &std::path::Path, at: EvalTime) -> Result<policy::Policy, Failure> {
    policy::load(dir, at).map_err(|diags| {
        for d in &diags {
            eprintln!("{d}");
        }
        Failure::config(format!(
            "policy {} has {} problem(s); run `emla policy check {}`",
            dir.display(),
            diags.len(),
            dir.display()
        ))
    })
}

fn read_message(path: &std::path::Path) -> Result<Vec<u8>, Failure> {
    let result = if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).map(|_| buf)
    } else {
        std::fs::read(path)
    };
    result.map_err(|e| Failure::config(format!("cannot read message {}: {e}", path.display())))
}

fn run_verify(
    message: PathBuf,
    policy_dir: PathBuf,
    mail_from: Option<String>,
    rcpt: Vec<String>,
    at: Option<String>,
    config: Option<PathBuf>,
    json: bool,
) -> Outcome {
    let at = eval_time(at)?;
    let policy = load_policy(&policy_dir, at)?;
    let envelope = Envelope {
        mail_from: mail_from.as_deref(),
        rcpt_to: &rcpt,
    };
    let fetched = match config {
        Some(path) => {
            let config = Config::load(&path).map_err(Failure::config)?;
            emla::revocation::Revocation::open(&config.data_dir, &config.revocation).current()
        }
        None => Default::default(),
    };
    // A file is judged in bounded memory, as the gateway judges DATA.
    let verdict = if message.as_os_str() == "-" {
        let raw = read_message(&message)?;
        verify::verify_data(&policy, &fetched, &raw, &envelope, at)
    } else {
        verify::verify_file(&policy, &fetched, &message, &envelope, at).map_err(|e| {
            Failure::config(format!("cannot read message {}: {e}", message.display()))
        })?
    };
    if json {
        println!("{}", verdict.to_json());
    } else {
        print!("{}", verdict.to_text());
    }
    Ok(if verdict.accepted() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_REJECTED)
    })
}

/// Exit 0 when the two policies decide alike, 1 when something changed (as
/// diff(1) does), 2 when either does not load.
fn run_policy_diff(
    old: &std::path::Path,
    new: &std::path::Path,
    at: Option<String>,
    json: bool,
) -> Outcome {
    let at = eval_time(at)?;
    let (a, b) = (load_policy(old, at)?, load_policy(new, at)?);
    let changes = policy::diff::diff(&a, &b);
    if json {
        let v = serde_json::json!({
            "old": {"dir": old.display().to_string(), "version": a.version},
            "new": {"dir": new.display().to_string(), "version": b.version},
            "changes": changes,
        });
        println!("{v}");
    } else {
        for c in &changes {
            println!("{c}");
        }
        let short = |v: &str| v[..v.len().min(16)].to_owned();
        eprintln!(
            "{} (version {}) -> {} (version {}): {} change(s)",
            old.display(),
            short(&a.version),
            new.display(),
            short(&b.version),
            changes.len()
        );
    }
    Ok(if changes.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Exit 0 when the candidate decides the recorded traffic alike, 1 when
/// some message would change, 2 for usage, configuration or store errors.
fn run_policy_replay(
    candidate: &std::path::Path,
    config: Option<PathBuf>,
    [since, from, until]: [Option<String>; 3],
    json: bool,
) -> Outcome {
    use emla::audit::replay::{replay, Period};
    init_logging("warn");
    let config = load_config(config)?;
    let period = Period::from_flags(
        since.as_deref(),
        from.as_deref(),
        until.as_deref(),
        emla::store::now_ms(),
    )
    .map_err(|e| Failure::with_code(&e, e.exit_code()))?;
    let policy = std::sync::Arc::new(load_policy(candidate, EvalTime::now())?);
    let fetched =
        emla::revocation::Revocation::open(&config.data_dir, &config.revocation).current();
    let rt = runtime()?;
    let report = rt.block_on(async {
        let store = open_store(&config).await?;
        replay(&store, policy, fetched, period)
            .await
            .map_err(|e| Failure::with_code(&e, e.exit_code()))
    })?;
    if json {
        println!(
            "{}",
            serde_json::to_string(&report).expect("report serializes")
        );
    } else {
        print!("{}", report.text(period));
    }
    Ok(if report.changes.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn run_policy_show(config: Option<PathBuf>, args: emla::audit::policies::ShowArgs) -> Outcome {
    init_logging("warn");
    let config = load_config(config)?;
    let rt = runtime()?;
    let bytes = rt.block_on(async {
        let store = open_store(&config).await?;
        emla::audit::policies::show(&store, &args)
            .await
            .map_err(|e| Failure::with_code(&e, e.exit_code()))
    })?;
    use std::io::Write;
    std::io::stdout()
        .write_all(&bytes)
        .map_err(|e| Failure::config(format!("cannot write to standard output: {e}")))?;
    Ok(ExitCode::SUCCESS)
}

fn run_policy_check(dir: PathBuf, at: Option<String>, json: bool) -> Outcome {
    let at = eval_time(at)?;
    let located = |d: &policy::Diagnostic| {
        serde_json::json!({
            "file": d.file.display().to_string(),
            "line": d.line,
            "col": d.col,
            "message": d.message,
        })
    };
    Ok(match policy::load(&dir, at) {
        Ok(p) => {
            if json {
                let v = serde_json::json!({
                    "ok": true,
                    "version": p.version,
                    "authorities": p.authorities.len(),
                    "routes": p.routes.len(),
                    "kinds": p.kinds.kinds.len(),
                    "problems": [],
                    "notes": p.notes.iter().map(located).collect::<Vec<_>>(),
                });
                println!("{v}");
            } else {
                println!(
                    "{}: ok ({} authorities, {} routes, {} kinds, version {})",
                    dir.display(),
                    p.authorities.len(),
                    p.routes.len(),
                    p.kinds.kinds.len(),
                    &p.version[..p.version.len().min(16)]
                );
                for n in &p.notes {
                    println!("note: {n}");
                }
            }
            ExitCode::SUCCESS
        }
        Err(diags) => {
            if json {
                let problems: Vec<_> = diags.iter().map(located).collect();
                println!("{}", serde_json::json!({"ok": false, "problems": problems}));
            } else {
                for d in &diags {
                    println!("{d}");
                }
                eprintln!("{}: {} problem(s)", dir.display(), diags.len());
            }
            ExitCode::from(EXIT_REJECTED)
        }
    })
}
